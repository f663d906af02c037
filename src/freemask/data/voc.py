"""PASCAL VOC 2012 segmentation layout: writer (toy world) and reader (toy world and real VOC).

Layout under ``root`` (``VOCdevkit/VOC2012`` for the real dataset)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png        palette PNG, index = class id, 255 = ignore (object borders)
    SegmentationClassAug/<id>.png     optional: SBD-augmented labels, plain 8-bit grey PNGs
    ImageSets/Segmentation/<split>.txt   one image id per line (train, val, trainval, ...)

21 classes, background first (``CLASS_NAMES``). The common "trainaug" setup (10,582 images:
SBD train+val and VOC train, less VOC val) reads its id list, e.g. ``trainaug.txt`` or mmseg's
``aug.txt``, with ``label_dir=AUG_LABEL_DIR``; see docs/datasets.md.
"""
from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from ..io import write_bytes
from .common import IGNORE_INDEX, LabelledImages, Pair, decode, read_index_png, require_dir, require_label_files

CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
LABEL_DIR = "SegmentationClass"
AUG_LABEL_DIR = "SegmentationClassAug"


def voc_palette(n: int = 256) -> list[int]:
    """The standard VOC colour map (bit-interleaved), flat [r, g, b, r, g, b, ...]."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 RGB image, as the toy world's VOC writer stores it (libjpeg's default
    4:2:0 chroma subsampling)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
    return buf.getvalue()


def as_stored(images: np.ndarray, quality: int) -> np.ndarray:
    """uint8 RGB images (N, H, W, 3) after a JPEG round trip at ``quality``: what a reader of a
    split written by :func:`write_sample` sees."""
    out = np.empty_like(images)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.open(io.BytesIO(encode_jpeg(img, quality))).convert("RGB"))
    return out


def write_sample(root: str | Path, sample_id: str, image: np.ndarray, label: np.ndarray, jpeg_quality: int = 95) -> None:
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    write_bytes(root / "JPEGImages" / f"{sample_id}.jpg", encode_jpeg(image, jpeg_quality))
    lab = Image.fromarray(label.astype(np.uint8), mode="P")
    lab.putpalette(voc_palette())
    buf = io.BytesIO()
    lab.save(buf, format="PNG")
    write_bytes(root / "SegmentationClass" / f"{sample_id}.png", buf.getvalue())


def write_split(root: str | Path, split: str, ids: list[str]) -> None:
    d = Path(root) / "ImageSets" / "Segmentation"
    d.mkdir(parents=True, exist_ok=True)
    write_bytes(d / f"{split}.txt", "".join(f"{i}\n" for i in ids).encode())


def split_ids(root: str | Path, split: str) -> list[str]:
    """The ids listed in ``ImageSets/Segmentation/<split>.txt``."""
    lists = Path(root) / "ImageSets" / "Segmentation"
    lst = lists / f"{split}.txt"
    if not lst.is_file():
        have = sorted(f.stem for f in lists.glob("*.txt")) if lists.is_dir() else []
        raise FileNotFoundError(f"VOC split list {lst} not found (is {root} a VOC-layout directory?); "
                                f"splits present: {', '.join(have) or 'none'}")
    ids = []
    for n, line in enumerate(lst.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if any(c.isspace() for c in line) or "/" in line:
            raise DataError(lst, f"expected one image id, got {line!r} (a list of path pairs, as in some trainaug "
                                 "downloads, must be reduced to ids: the file stems)", line=n)
        ids.append(line)
    if not ids:
        raise DataError(lst, "VOC split list is empty")
    return ids


def pairs(root: str | Path, split: str, label_dir: str = LABEL_DIR) -> list[Pair]:
    """The split's (id, ``JPEGImages/<id>.jpg``, ``<label_dir>/<id>.png``) in list order."""
    root = Path(root)
    ids = split_ids(root, split)
    require_dir(root / label_dir, "VOC label directory")
    out = [Pair(i, root / "JPEGImages" / f"{i}.jpg", root / label_dir / f"{i}.png") for i in ids]
    require_label_files(out, f"VOC split {split!r}")
    return out


def load_label(path: str | Path, num_classes: int = len(CLASS_NAMES),
               class_names: tuple[str, ...] | None = None) -> np.ndarray:
    """Class ids of a palette (SegmentationClass) or grey (SegmentationClassAug) PNG; 255 = ignore.

    An index outside ``0..num_classes-1`` and 255 is a DataError naming the file, the index and the
    valid ones (with ``class_names``, the names of ``0..num_classes-1``, listed too).
    """
    if not 1 <= num_classes < IGNORE_INDEX:
        raise ValueError(f"num_classes must be in 1..{IGNORE_INDEX - 1}, got {num_classes}")
    lut = np.full(256, -1, np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return decode(read_index_png(path), lut, path, "class index", class_names)


def dataset(root: str | Path, split: str, label_dir: str = LABEL_DIR,
            class_names: tuple[str, ...] = CLASS_NAMES) -> LabelledImages:
    """A lazy VOC-layout split; ``class_names`` bounds the valid indices (the toy world has fewer)."""
    return VOCSegmentation(root, split, label_dir, class_names)


class VOCSegmentation(LabelledImages):
    """Reads a split of a VOC-layout directory; items are (id, RGB uint8 image, uint8 label map)."""

    def __init__(self, root: str | Path, split: str, label_dir: str = LABEL_DIR,
                 class_names: tuple[str, ...] = CLASS_NAMES):
        self.root = Path(root)
        super().__init__(pairs(root, split, label_dir),
                         partial(load_label, num_classes=len(class_names), class_names=tuple(class_names)), class_names)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.pairs]
