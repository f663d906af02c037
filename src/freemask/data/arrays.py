"""Labelled image sets as in-memory arrays (the toy world is small enough to hold in RAM)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import shards
from .voc import VOCSegmentation


def from_shards(*directories: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N,H,W,3) uint8 and label maps (N,H,W) uint8 from ``image.png``/``label.png`` members."""
    images, labels = [], []
    for d in directories:
        for key, m in shards.read_shards(d):
            if "label.png" not in m:
                raise KeyError(f"sample {key} in {d} has no label.png member")
            images.append(m["image.png"])
            labels.append(m["label.png"])
    if not images:
        raise FileNotFoundError(f"no samples in {', '.join(map(str, directories))}")
    return np.stack(images), np.stack(labels)


def from_voc(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    ds = VOCSegmentation(root, split)
    items = list(ds)
    return np.stack([i[1] for i in items]), np.stack([i[2] for i in items])
