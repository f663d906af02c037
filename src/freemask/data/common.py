"""What the dataset readers share: (image, label) file pairs, label decoding, lazy loading.

Every reader module (``voc``, ``cityscapes``, ``ade20k``) offers the same small interface:

- ``CLASS_NAMES``: the class names, index = class id in the decoded label maps;
- ``pairs(root, split) -> list[Pair]``: the split's files, sorted, each image with its label
  file; every label file is checked to exist before anything is read;
- ``load_label(path) -> np.ndarray``: one label file decoded to uint8 class ids ``0..K-1`` with
  ``IGNORE_INDEX`` (255) for pixels that are not scored, the dataset's mapping already applied;
- ``dataset(root, split) -> LabelledImages``: a lazy sequence of ``(id, image, label)`` that
  reads one sample per access, so a split of any size never sits in memory.

A file that does not decode, or a label value outside the table, is a
:class:`freemask.errors.DataError` naming the file (and the value, and the valid ones).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, reason, stage_hint

from ..labels import IGNORE_INDEX  # noqa: F401  (re-exported)
# what PIL raises on a file that is not a whole image of a format it knows (OSError: unidentified or
# truncated; SyntaxError: a broken PNG chunk; ValueError / EOFError: some decoders' damaged data)
PIL_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Pair:
    id: str
    image: Path
    label: Path


def check_split(dataset: str, split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ValueError(f"{dataset} split {split!r} is unknown; expected one of: {', '.join(allowed)}")


def require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} not found")


def require_label_files(pairs: list[Pair], dataset: str) -> None:
    """Raise on the first pair whose label (or image) file is missing, naming both files."""
    for p in pairs:
        for f, kind in ((p.image, "image"), (p.label, "label")):
            if not f.is_file():
                other = p.label if kind == "image" else p.image
                raise FileNotFoundError(f"{dataset}: {kind} file {f} is missing (for {other})")


def unreadable_image(path: str | Path, err: BaseException) -> DataError:
    """The DataError for an image file PIL cannot read."""
    why = "not an image file PIL can identify" if isinstance(err, UnidentifiedImageError) else reason(err)
    return DataError(path, f"unreadable image ({why})", stage_hint(path))


def read_rgb(path: str | Path) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"image {path} not found")
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except PIL_READ_ERRORS as err:
        raise unreadable_image(path, err) from None


def read_index_png(path: str | Path) -> np.ndarray:
    """The raw uint8 indices of a single-channel PNG: palette (``P``) or grey (``L``) mode.

    A colour (RGB) label image is refused rather than guessed at: its colours are not ids.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"label image {path} not found")
    try:
        with Image.open(path) as im:
            mode = im.mode
            raw = np.array(im) if mode in ("P", "L") else None
    except PIL_READ_ERRORS as err:
        raise unreadable_image(path, err) from None
    if raw is None:
        raise DataError(path, f"expected a palette (P) or 8-bit grey (L) PNG of label ids, got mode {mode}")
    return raw


def _id_ranges(ids: np.ndarray) -> str:
    """Sorted ints as runs: [0, 1, 2, 5, 255] -> '0..2, 5, 255'."""
    runs, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            runs.append(f"{start}" if start == v else f"{start}..{v}")
            start = None
    return ", ".join(runs)


def decode(raw: np.ndarray, lut: np.ndarray, path: str | Path, what: str,
           class_names: Sequence[str] | None = None) -> np.ndarray:
    """Map raw ids through a 256-entry table (-1 marks an id outside it) to uint8 class ids.

    An id outside the table is a DataError naming the file, the ids and the valid ones
    (``class_names``: the names of raw ids 0, 1, ..., when raw ids are class ids)."""
    out = lut[raw]
    if (out < 0).any():
        bad = np.unique(raw[out < 0]).tolist()
        valid = f"valid: {_id_ranges(np.flatnonzero(lut >= 0).tolist())}"
        if class_names is not None:
            valid += f" ({', '.join(f'{i} {c}' for i, c in enumerate(class_names))}; {IGNORE_INDEX} ignore)"
        raise DataError(path, f"{what} {bad[0]} is not in the label table (all unknown ids: {bad}); {valid}")
    return out.astype(np.uint8)


class LabelledImages(Sequence):
    """A split as a lazy sequence of ``(id, RGB uint8 image, uint8 label map)``."""

    def __init__(self, pairs: list[Pair], load_label: Callable[[Path], np.ndarray], class_names: Sequence[str]):
        self.pairs = list(pairs)
        self.load_label = load_label
        self.class_names = tuple(class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray, np.ndarray]:
        p = self.pairs[i]
        image = read_rgb(p.image)
        label = self.load_label(p.label)
        if image.shape[:2] != label.shape:
            raise DataError(p.image, f"{image.shape[1]}x{image.shape[0]} pixels, but its label {p.label} is "
                                     f"{label.shape[1]}x{label.shape[0]}")
        return p.id, image, label

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]
