"""Atomic writes: a file or folder appears under its final name complete, or not at all.

Every writer in the package goes through these helpers, so an interrupted stage never leaves a
half-written file that a resumed run (or DVC) would mistake for a finished one.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable


def write_bytes(path: str | Path, data: bytes) -> None:
    write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data, indent: int = 2) -> None:
    """Sorted keys and a trailing newline, so equal data gives equal bytes."""
    write_text(path, json.dumps(data, indent=indent, sort_keys=True) + "\n")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` to write a file, then rename it into place (for torch.save, tarfile...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def replace_dir(out_dir: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_dir)`` to fill a fresh folder, then swap it in for ``out_dir``.

    The old folder is moved aside before the new one takes its name and removed only after, so
    at every moment either the old or the new complete folder exists.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    old = out_dir.with_name(out_dir.name + ".old")
    for d in (tmp, old):
        if d.exists():
            shutil.rmtree(d)
    try:
        writer(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old.exists():
        shutil.rmtree(old)
