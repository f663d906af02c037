"""Cutting generated objects out by their masks and pasting them into an image, in stacking order.

A newer object overwrites the label pixels it covers, so masks stay consistent under occlusion.
Pixels a mask rule left undecided (label 255, e.g. Dataset Diffusion's uncertainty band) travel
with their object and stay 255 where it is pasted. Which objects join which scene, where, and
how they are lit: :mod:`freemask.compose.scenes`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..metrics.segmentation import IGNORE_INDEX


@dataclass(frozen=True)
class Cutout:
    key: str
    rgb: np.ndarray  # (h, w, 3) uint8, the bounding box of the object and its undecided pixels
    mask: np.ndarray  # (h, w) bool, the object
    label: int
    ignore: np.ndarray  # (h, w) bool, pixels the mask rule left undecided (label 255), never in ``mask``
    background: str | None = None  # the background of the prompt the object was generated with
    surround: np.ndarray | None = None  # mean log colour around the object in its image (harmonize=statistics)


def cut_out(key: str, image: np.ndarray, label: np.ndarray, background: str | None = None) -> Cutout | None:
    """The crop around the object and its undecided (``IGNORE_INDEX``) pixels; None when no pixel
    is surely the object."""
    ignore = label == IGNORE_INDEX
    fg = (label > 0) & ~ignore
    if not fg.any():
        return None
    classes = np.unique(label[fg])
    if len(classes) != 1:
        raise ValueError(f"object sample {key!r} has labels {classes.tolist()}; one class per object expected")
    ys, xs = np.nonzero(fg | ignore)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Cutout(key, image[y0:y1, x0:x1].copy(), fg[y0:y1, x0:x1].copy(), int(classes[0]),
                  ignore[y0:y1, x0:x1].copy(), background)


def _resize_mask(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.array(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127


def paste(image: np.ndarray, label: np.ndarray, obj: Cutout, cx: float, cy: float,
          size: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Paste ``obj`` in place, its longer side ``size`` (fraction of the image), centred at (cx, cy).

    Parts falling outside the canvas are clipped. The object's pixels take its label; its undecided
    pixels are pasted too (they may be object) and take ``IGNORE_INDEX``, never the object's label.
    Either way the pasted pixels overwrite the labels they cover (occlusion). Returns (H, W) bool
    maps of the pixels pasted and of those labelled as the object, and the object's area at that
    size before clipping (pixels).
    """
    H, W = label.shape
    h, w = obj.mask.shape
    scale = size * max(H, W) / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    rgb = np.array(Image.fromarray(obj.rgb).resize((nw, nh), Image.BILINEAR))
    m, ign = _resize_mask(obj.mask, (nw, nh)), _resize_mask(obj.ignore, (nw, nh))
    top, left = int(round(cy * H - nh / 2)), int(round(cx * W - nw / 2))
    ys, xs = slice(max(0, top), min(H, top + nh)), slice(max(0, left), min(W, left + nw))
    pasted, labelled = np.zeros((H, W), bool), np.zeros((H, W), bool)
    if ys.start >= ys.stop or xs.start >= xs.stop:  # wholly outside the canvas
        return pasted, labelled, int(m.sum())
    sub = (slice(ys.start - top, ys.stop - top), slice(xs.start - left, xs.stop - left))
    mm, ii = m[sub], ign[sub] & ~m[sub]
    covered = mm | ii
    image[ys, xs][covered] = rgb[sub][covered]
    label[ys, xs][mm] = obj.label
    label[ys, xs][ii] = IGNORE_INDEX
    pasted[ys, xs], labelled[ys, xs] = covered, mm
    return pasted, labelled, int(m.sum())
