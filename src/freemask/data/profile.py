"""A profile's real dataset (``data`` params) as arrays in the profile's label space.

The readers of VOC 2012, Cityscapes (``*_gtFine_labelIds.png`` -> the 19 train ids) and ADE20K
give labels in the dataset's own classes; a profile trains on some of them. A dataset class that
is one of ``profile.classes`` takes the profile's label, any other class becomes background, and
ignored pixels stay ignored. Images are resized to ``size`` x ``size`` (labels by nearest neighbour)
so that a split stacks into one array.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from ..labels import IGNORE_INDEX, LabelSet, from_profile
from . import ade20k, cityscapes, voc
from .arrays import from_voc

READERS = {"voc": voc.dataset, "cityscapes": cityscapes.dataset, "ade20k": ade20k.dataset}


def label_lut(dataset_names: tuple[str, ...], labels: LabelSet) -> np.ndarray:
    """(256,) uint8: a dataset label -> the profile's label (0 for classes the profile leaves out)."""
    lut = np.zeros(256, np.uint8)
    for i, name in enumerate(dataset_names):
        lut[i] = labels.classes.index(name) + 1 if name in labels.classes else 0
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


CLASS_NAMES = {"voc": voc.CLASS_NAMES, "cityscapes": cityscapes.CLASS_NAMES, "ade20k": ade20k.CLASS_NAMES}


def missing_classes(fmt: str, labels: LabelSet) -> list[str]:
    """The profile's classes that the dataset format has no class of."""
    return [c for c in labels.classes if c not in CLASS_NAMES[fmt]]


def load_split(fmt: str, root: str, split: str, labels: LabelSet, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, size, size, 3) uint8 and label maps (N, size, size) uint8 of a split."""
    missing = missing_classes(fmt, labels)
    if missing:
        raise DataError(root, f"the {fmt} classes have no {', '.join(missing)} (profile.classes)")
    ds = READERS[fmt](root, split)
    lut = label_lut(ds.class_names, labels)
    images, label_maps = [], []
    for _, image, label in tqdm(ds, desc=f"{fmt} {split}", leave=False):
        images.append(np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR)))
        label_maps.append(np.asarray(Image.fromarray(lut[label]).resize((size, size), Image.NEAREST)))
    if not images:
        raise DataError(root, f"the {fmt} split {split!r} has no images")
    return np.stack(images), np.stack(label_maps)


def real_split(p, split: str, seen_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A split of the profile's real dataset (params ``p``) in its label space: the toy world's splits
    as written (VOC layout, toy labels), a real dataset through its reader at ``data.image_size``.
    ``seen_only``: the pixels of ``profile.unseen`` classes ignored (zero-shot training data)."""
    labels = from_profile(p.profile)
    if p.profile.name == "toy":
        images, label_maps = from_voc(p.data.root, split)
    else:
        images, label_maps = load_split(p.data.format, p.data.root, split, labels, p.data.image_size)
    if seen_only and p.profile.unseen:
        label_maps = np.where(np.isin(label_maps, [labels.index(c) for c in p.profile.unseen]), IGNORE_INDEX,
                              label_maps).astype(np.uint8)
    return images, label_maps
