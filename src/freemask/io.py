"""Atomic writes: a file or folder appears under its final name complete, or not at all.

Every writer in the package goes through these helpers, so an interrupted stage never leaves a
half-written file that a resumed run (or DVC) would mistake for a finished one.

And the readers of weights files: :func:`load_torch` (``torch.load`` with ``weights_only=True``,
never unpickling code) and :func:`load_safetensors`; a file that does not read is a
:class:`freemask.errors.DataError` naming it.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Callable

from .errors import DataError, reason


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


def read_json(path: str | Path, hint: str | None = None):
    """A JSON file's data; a file that is not JSON is a DataError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(path, f"not valid JSON ({reason(err)})", hint) from None


def load_torch(path: str | Path, hint: str | None = None, key: str | None = None):
    """``torch.load`` of a file ``torch.save`` wrote, with ``weights_only=True``: tensors and plain
    containers (dict, list, tuple, str, int, float, bool, None) only, nothing that runs code.

    A truncated or corrupt file, or one holding other objects, is a DataError naming it (and ``key``,
    the params key that named the file, if one did)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one has no directory
        raise DataError(path, "not a whole torch.save file (truncated or corrupt)", hint, key=key)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # what weights_only refuses, or a broken pickle
        raise DataError(path, f"refused by a weights-only load ({_unpickler_reason(err)}; only tensors and plain "
                              "containers are read: unpickling other objects could run code from the file)",
                        hint, key=key) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as err:  # torch's zip reader on damaged records
        raise DataError(path, f"corrupt torch.save file ({reason(err)})", hint, key=key) from None


def _unpickler_reason(err: Exception) -> str:
    """The one sentence of torch's long weights-only message that says what was refused."""
    for line in str(err).splitlines():  # e.g. "Trying to load unsupported GLOBAL posix.mkdir whose module posix is
        if "WeightsUnpickler error:" in line or "GLOBAL" in line:  # blocked.", "... Unsupported global: GLOBAL ..."
            return line.split("WeightsUnpickler error:")[-1].strip().split(". ")[0].rstrip(".")
    return reason(err)


def load_safetensors(path: str | Path, hint: str | None = None, key: str | None = None) -> dict:
    """The tensors of a safetensors file; a truncated or corrupt one is a DataError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise DataError(path, f"not a whole safetensors file ({reason(err)})", hint, key=key) from None
