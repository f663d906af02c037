"""ADE20K as the SceneParsing benchmark (ADEChallengeData2016): 150 classes.

Layout under ``root`` (the ``ADEChallengeData2016`` folder)::

    images/{training,validation}/ADE_<split>_<n>.jpg
    annotations/{training,validation}/ADE_<split>_<n>.png   8-bit grey: 0 = other / unlabelled, 1..150

``load_label`` applies "reduce zero label": 0 becomes ignore (255) and 1..150 shift down to class
ids 0..149, the order of ``CLASS_NAMES`` (the benchmark's objectInfo150 order, "wall" first). A
value above 150 is an error naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import IGNORE_INDEX, LabelledImages, Pair, check_split, decode, read_index_png, require_dir, require_label_files

CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet", "sidewalk",
    "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill",
    "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball",
    "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
SPLITS = ("training", "validation")

REDUCE_ZERO_LABEL = np.full(256, -1, np.int16)
REDUCE_ZERO_LABEL[0] = IGNORE_INDEX
REDUCE_ZERO_LABEL[1: len(CLASS_NAMES) + 1] = np.arange(len(CLASS_NAMES))


def pairs(root: str | Path, split: str) -> list[Pair]:
    """Every ``images/<split>/*.jpg`` (sorted) with ``annotations/<split>/<same name>.png``."""
    check_split("ADE20K", split, SPLITS)
    root = Path(root)
    img_dir, lab_dir = root / "images" / split, root / "annotations" / split
    require_dir(img_dir, "ADE20K image directory")
    require_dir(lab_dir, "ADE20K annotation directory")
    images = sorted(img_dir.glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"no *.jpg images in {img_dir}")
    out = [Pair(img.stem, img, lab_dir / f"{img.stem}.png") for img in images]
    require_label_files(out, f"ADE20K split {split!r}")
    return out


def load_label(path: str | Path) -> np.ndarray:
    """Class ids 0..149 (255 = ignore, was 0) of an annotation PNG."""
    return decode(read_index_png(path), REDUCE_ZERO_LABEL, path, "ADE20K annotation value")


def dataset(root: str | Path, split: str) -> LabelledImages:
    return LabelledImages(pairs(root, split), load_label, CLASS_NAMES)
