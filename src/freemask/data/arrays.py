"""Labelled image sets as in-memory arrays (the toy world is small enough to hold in RAM), and the
one loop that reads shard members into lists (``read_members``)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..labels import toy_labels
from . import shards
from .common import IGNORE_INDEX
from .voc import VOCSegmentation

TOY_CLASS_NAMES = toy_labels().names


def shard_label(sample: shards.Sample, class_names: tuple[str, ...] = TOY_CLASS_NAMES) -> np.ndarray:
    """A shard sample's ``label.png``, checked at read time: a value that is neither a class id of
    ``class_names`` nor 255 (ignore) is a DataError naming the shard, the sample and the values."""
    label = sample["label.png"]
    bad = np.setdiff1d(np.unique(label), [*range(len(class_names)), IGNORE_INDEX])
    if bad.size:
        raise DataError(sample.shard, f"sample {sample.key!r}: label.png holds {bad.tolist()}, neither a class id "
                                      f"0..{len(class_names) - 1} ({', '.join(class_names)}) nor {IGNORE_INDEX} (ignore)")
    return label


def read_members(directories: Sequence[str | Path], names: Sequence[str],
                 class_names: tuple[str, ...] = TOY_CLASS_NAMES, desc: str | None = None) -> dict[str, list]:
    """``shards.read_members`` with each ``label.png`` checked against ``class_names`` (:func:`shard_label`)."""
    return shards.read_members(directories, names, {"label.png": lambda m: shard_label(m, class_names)}, desc)


def from_shards(*directories: str | Path,
                class_names: tuple[str, ...] = TOY_CLASS_NAMES) -> tuple[np.ndarray, np.ndarray]:
    """Images (N,H,W,3) uint8 and label maps (N,H,W) uint8 from ``image.png``/``label.png`` members
    (labels: class ids of ``class_names`` or 255, see :func:`shard_label`)."""
    m = read_members(directories, ("image.png", "label.png"), class_names)
    return np.stack(m["image.png"]), np.stack(m["label.png"])


def from_voc(root: str | Path, split: str,
             class_names: tuple[str, ...] = TOY_CLASS_NAMES) -> tuple[np.ndarray, np.ndarray]:
    """A VOC-layout split in memory; a label value outside ``class_names`` (default: the toy world's
    background and classes, as its VOC splits are written) and 255 is an error naming the file."""
    ds = VOCSegmentation(root, split, class_names=class_names)
    items = list(ds)
    return np.stack([i[1] for i in items]), np.stack([i[2] for i in items])
