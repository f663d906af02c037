"""Deterministic tar shards of samples (WebDataset-style member names).

A sample is a key plus named members: numpy images become PNGs, dicts become JSON. Members are
written sorted, with fixed mtime/uid/gid, so the same samples give the same bytes. Each shard is
written to a temporary name and renamed, so an interrupted run leaves only whole shards, which
is what makes stages resumable.
"""
from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import write_with


def encode_png(array: np.ndarray, palette: list[int] | None = None) -> bytes:
    if array.dtype != np.uint8:
        raise TypeError(f"PNG members must be uint8 arrays, got {array.dtype}")
    img = Image.fromarray(array)
    if palette is not None:
        img = img.convert("P")
        img.putpalette(palette)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.array(img)


def _encode(name: str, value) -> bytes:
    if name.endswith(".png"):
        return encode_png(value)
    if name.endswith(".json"):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if name.endswith(".txt"):
        return str(value).encode()
    raise ValueError(f"cannot encode member {name!r}: use a .png, .json or .txt suffix")


def _decode(name: str, data: bytes):
    if name.endswith(".png"):
        return decode_png(data)
    if name.endswith(".json"):
        return json.loads(data)
    return data.decode()


def write_shard(path: str | Path, samples: Iterable[tuple[str, dict]]) -> None:
    """Write samples ``(key, {member_suffix: value})`` to ``path`` atomically."""
    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, members in samples:
                if "/" in key or "." in key:
                    raise ValueError(f"sample key {key!r} may not contain '/' or '.'")
                for suffix in sorted(members):
                    data = _encode(suffix, members[suffix])
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    tar.addfile(info, io.BytesIO(data))

    write_with(path, write)


def read_shard(path: str | Path) -> Iterator[tuple[str, dict]]:
    """Yield ``(key, {suffix: value})`` in the order written."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"shard {path} is missing")
    current, members = None, {}
    with tarfile.open(path, "r") as tar:
        for info in tar:
            key, _, suffix = info.name.partition(".")
            if current is not None and key != current:
                yield current, members
                members = {}
            current = key
            members[suffix] = _decode(suffix, tar.extractfile(info).read())
    if current is not None:
        yield current, members


def shard_paths(directory: str | Path) -> list[Path]:
    paths = sorted(Path(directory).glob("shard-*.tar"))
    if not paths:
        raise FileNotFoundError(f"no shards (shard-*.tar) in {directory}")
    return paths


def read_shards(directory: str | Path) -> Iterator[tuple[str, dict]]:
    for p in shard_paths(directory):
        yield from read_shard(p)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.tar"
