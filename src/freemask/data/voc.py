"""PASCAL VOC 2012 segmentation layout: writer (toy world) and reader (toy world and real VOC).

Layout: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNG whose indices are
class labels, 255 = ignore), ``ImageSets/Segmentation/<split>.txt`` (one id per line).
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import write_bytes

IGNORE_INDEX = 255


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


def write_sample(root: str | Path, sample_id: str, image: np.ndarray, label: np.ndarray, jpeg_quality: int = 95) -> None:
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=jpeg_quality)
    write_bytes(root / "JPEGImages" / f"{sample_id}.jpg", buf.getvalue())
    lab = Image.fromarray(label.astype(np.uint8), mode="P")
    lab.putpalette(voc_palette())
    buf = io.BytesIO()
    lab.save(buf, format="PNG")
    write_bytes(root / "SegmentationClass" / f"{sample_id}.png", buf.getvalue())


def write_split(root: str | Path, split: str, ids: list[str]) -> None:
    d = Path(root) / "ImageSets" / "Segmentation"
    d.mkdir(parents=True, exist_ok=True)
    write_bytes(d / f"{split}.txt", "".join(f"{i}\n" for i in ids).encode())


class VOCSegmentation:
    """Reads a split of a VOC-layout directory; items are (id, RGB uint8 image, uint8 label map)."""

    def __init__(self, root: str | Path, split: str):
        self.root = Path(root)
        lst = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not lst.exists():
            raise FileNotFoundError(f"VOC split list {lst} not found (is {self.root} a VOC-layout directory?)")
        self.ids = [line.strip() for line in lst.read_text().splitlines() if line.strip()]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray, np.ndarray]:
        sid = self.ids[i]
        img_p = self.root / "JPEGImages" / f"{sid}.jpg"
        lab_p = self.root / "SegmentationClass" / f"{sid}.png"
        for p in (img_p, lab_p):
            if not p.exists():
                raise FileNotFoundError(f"{p} is listed in the split but missing")
        with Image.open(img_p) as im:
            image = np.array(im.convert("RGB"))
        with Image.open(lab_p) as lb:
            if lb.mode not in ("P", "L"):
                raise ValueError(f"{lab_p}: expected a palette (P) or L PNG of class indices, got mode {lb.mode}")
            label = np.array(lb)
        return sid, image, label

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]
