"""Cityscapes fine annotations, read as the standard 19 training classes.

Layout under ``root``::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   8-bit grey, values = label ids

``load_label`` maps label ids (0..33) to train ids (0..18) by the official table
(cityscapesScripts, ``helpers/labels.py``): the 15 ids whose train id is 255 (void classes, and
parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer) become ignore.
An id outside 0..33 is an error: gtFine label-id images hold no other value (the table's
license plate, id -1, is never drawn into them).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .common import IGNORE_INDEX, LabelledImages, Pair, check_split, decode, read_index_png, require_dir, require_label_files


class Label(NamedTuple):
    name: str
    id: int
    train_id: int


LABELS = (
    Label("unlabeled", 0, 255), Label("ego vehicle", 1, 255), Label("rectification border", 2, 255),
    Label("out of roi", 3, 255), Label("static", 4, 255), Label("dynamic", 5, 255), Label("ground", 6, 255),
    Label("road", 7, 0), Label("sidewalk", 8, 1), Label("parking", 9, 255), Label("rail track", 10, 255),
    Label("building", 11, 2), Label("wall", 12, 3), Label("fence", 13, 4), Label("guard rail", 14, 255),
    Label("bridge", 15, 255), Label("tunnel", 16, 255), Label("pole", 17, 5), Label("polegroup", 18, 255),
    Label("traffic light", 19, 6), Label("traffic sign", 20, 7), Label("vegetation", 21, 8), Label("terrain", 22, 9),
    Label("sky", 23, 10), Label("person", 24, 11), Label("rider", 25, 12), Label("car", 26, 13),
    Label("truck", 27, 14), Label("bus", 28, 15), Label("caravan", 29, 255), Label("trailer", 30, 255),
    Label("train", 31, 16), Label("motorcycle", 32, 17), Label("bicycle", 33, 18),
)
CLASS_NAMES = tuple(lab.name for lab in sorted((lab for lab in LABELS if lab.train_id != IGNORE_INDEX),
                                                key=lambda lab: lab.train_id))
SPLITS = ("train", "val")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"

ID_TO_TRAIN_ID = np.full(256, -1, np.int16)
for _lab in LABELS:
    ID_TO_TRAIN_ID[_lab.id] = _lab.train_id


def pairs(root: str | Path, split: str) -> list[Pair]:
    """Every ``leftImg8bit`` image of the split (sorted by city, then name) with its labelIds PNG."""
    check_split("Cityscapes", split, SPLITS)
    root = Path(root)
    img_dir, lab_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    require_dir(img_dir, "Cityscapes image directory")
    require_dir(lab_dir, "Cityscapes label directory")
    images = sorted(img_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise FileNotFoundError(f"no <city>/*{IMAGE_SUFFIX} images under {img_dir}")
    out = []
    for img in images:
        stem = img.name[: -len(IMAGE_SUFFIX)]
        out.append(Pair(stem, img, lab_dir / img.parent.name / f"{stem}{LABEL_SUFFIX}"))
    require_label_files(out, f"Cityscapes split {split!r}")
    return out


def load_label(path: str | Path) -> np.ndarray:
    """Train ids (0..18, 255 = ignore) of a ``*_gtFine_labelIds.png``."""
    return decode(read_index_png(path), ID_TO_TRAIN_ID, path, "Cityscapes label id")


def dataset(root: str | Path, split: str) -> LabelledImages:
    return LabelledImages(pairs(root, split), load_label, CLASS_NAMES)
