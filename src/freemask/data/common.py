"""What the dataset readers share: (image, label) file pairs, label decoding, lazy loading.

Every reader module (``voc``, ``cityscapes``, ``ade20k``) offers the same small interface:

- ``CLASS_NAMES``: the class names, index = class id in the decoded label maps;
- ``pairs(root, split) -> list[Pair]``: the split's files, sorted, each image with its label
  file; every label file is checked to exist before anything is read;
- ``load_label(path) -> np.ndarray``: one label file decoded to uint8 class ids ``0..K-1`` with
  ``IGNORE_INDEX`` (255) for pixels that are not scored, the dataset's mapping already applied;
- ``dataset(root, split) -> LabelledImages``: a lazy sequence of ``(id, image, label)`` that
  reads one sample per access, so a split of any size never sits in memory.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IGNORE_INDEX = 255


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


def read_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def read_index_png(path: str | Path) -> np.ndarray:
    """The raw uint8 indices of a single-channel PNG: palette (``P``) or grey (``L``) mode.

    A colour (RGB) label image is refused rather than guessed at: its colours are not ids.
    """
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette (P) or 8-bit grey (L) PNG of label ids, got mode {im.mode}")
        return np.array(im)


def decode(raw: np.ndarray, lut: np.ndarray, path: str | Path, what: str) -> np.ndarray:
    """Map raw ids through a 256-entry table (-1 marks an id outside it) to uint8 class ids."""
    out = lut[raw]
    if (out < 0).any():
        bad = np.unique(raw[out < 0]).tolist()
        raise ValueError(f"{path}: {what} {bad[0]} is not in the label table (all unknown ids: {bad})")
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
            raise ValueError(f"{p.image} is {image.shape[1]}x{image.shape[0]} but its label {p.label} is "
                             f"{label.shape[1]}x{label.shape[0]}")
        return p.id, image, label

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]
