"""Deterministic tar shards of samples (WebDataset-style member names).

A sample is a key plus named members: numpy images become PNGs, dicts become JSON. Members are
written sorted, with fixed mtime/uid/gid, so the same samples give the same bytes. Each shard is
written to a temporary name and renamed, so an interrupted run leaves only whole shards, which
is what makes stages resumable.

Reading checks what writing guarantees: a shard that is truncated or corrupt (a tar that ends early
or has no end-of-archive marker, a member that does not decode) or a sample without a member its
reader asks for is a :class:`freemask.errors.DataError` naming the shard, never a traceback from
tarfile or PIL, for every reader of shards.
"""
from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, reason, stage_hint
from ..io import write_with

# what decoding a member raises when its bytes are not what its suffix says (PIL: OSError for a
# truncated or unidentified image, SyntaxError for a broken PNG chunk; json / utf-8: ValueError)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


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


class Sample(dict):
    """A sample's ``{suffix: value}``; asking for a member it lacks is a DataError naming the shard."""

    def __init__(self, shard: Path, key: str):
        super().__init__()
        self.shard, self.key = shard, key

    def __missing__(self, suffix: str):
        raise DataError(self.shard, f"sample {self.key!r} has no {suffix} member (it has {', '.join(sorted(self))})",
                        _rerun(self.shard))


def _rerun(path: Path) -> str:
    return stage_hint(path) or "re-make it with the stage that writes it"


def _corrupt(path: Path, problem: str) -> DataError:
    return DataError(path, f"truncated or corrupt shard: {problem}", "delete it and " + _rerun(path))


def _ends_whole(path: Path, offset: int) -> bool:
    """A tar written to the end has its end-of-archive marker (two zero blocks) after the last member;
    tarfile stops reading silently at a missing or cut header, so a shard cut between members is
    found only by this."""
    with path.open("rb") as f:
        f.seek(offset)
        end = f.read(2 * tarfile.BLOCKSIZE)
    return len(end) == 2 * tarfile.BLOCKSIZE and not end.strip(b"\0")


def read_shard(path: str | Path) -> Iterator[tuple[str, dict]]:
    """Yield ``(key, {suffix: value})`` in the order written.

    A truncated or corrupt shard raises :class:`freemask.errors.DataError` (after yielding the
    samples before the damage: readers that write collect every sample first)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"shard {path} is missing")
    members = None
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                key, _, suffix = info.name.partition(".")
                if members is None or key != members.key:
                    if members is not None:
                        yield members.key, members
                    members = Sample(path, key)
                data = tar.extractfile(info).read()
                try:
                    members[suffix] = _decode(suffix, data)
                except _DECODE_ERRORS as err:
                    why = "not an image" if isinstance(err, UnidentifiedImageError) else reason(err)
                    raise _corrupt(path, f"member {info.name} does not decode ({why})") from None
            end = tar.offset
    except tarfile.TarError as err:
        raise _corrupt(path, f"not a whole tar archive ({reason(err)})") from None
    if not _ends_whole(path, end):
        raise _corrupt(path, "it ends without the end-of-archive marker (cut short after its last whole member)")
    if members is not None:
        yield members.key, members


def shard_paths(directory: str | Path) -> list[Path]:
    paths = sorted(Path(directory).glob("shard-*.tar"))
    if not paths:
        raise FileNotFoundError(f"no shards (shard-*.tar) in {directory}")
    return paths


def read_shards(directory: str | Path) -> Iterator[tuple[str, dict]]:
    for p in shard_paths(directory):
        yield from read_shard(p)


def read_members(directories: Sequence[str | Path], names: Sequence[str],
                 check: dict[str, Callable[["Sample"], object]] | None = None, desc: str | None = None) -> dict[str, list]:
    """The members ``names`` of every sample of the shards in ``directories``, in order, as lists by
    member name, plus ``key``: (folder, sample key) of each. ``check`` maps a member name to what reads
    it from the sample instead (a label checked against its classes). A sample without one of
    ``names`` is a DataError naming it; no sample at all is a FileNotFoundError."""
    from tqdm import tqdm

    check = check or {}
    out: dict[str, list] = {"key": [], **{n: [] for n in names}}
    for d in directories:
        for key, m in tqdm(read_shards(d), desc=desc, disable=desc is None):
            missing = [n for n in names if n not in m]
            if missing:
                raise DataError(m.shard, f"sample {key!r} has no {', '.join(missing)}")
            out["key"].append((Path(d), key))
            for n in names:
                out[n].append(check[n](m) if n in check else m[n])
    if not out["key"]:
        raise FileNotFoundError(f"no samples in {', '.join(map(str, directories))}")
    return out


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.tar"
