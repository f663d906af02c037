"""Application 1 of the Independence-Prior GAN on the pipeline's generated objects: box crops in,
full-image masks out.

The paper crops every image by its object's box and learns masks inside the crops. Here the box
is the bounding box of the pipeline's own mask (the attention mask, ``label.png > 0``), grown by
``independence.crop_margin`` of its side on each side and made square; the window is resized to
``independence.crop_side``. :func:`paste_back` is the inverse: a crop's mask resized back to its
window and put in place in an otherwise empty full-image mask.

Background patches (the background provider's images) are windows of the generated images that
do not touch the (one-pixel-dilated) attention mask -- the paper's "sample enough patches without
any foreground region from the original given images" -- or, when background images are given
(e.g. background-only renders), windows of those. Window sides are drawn from the crops' own
window sides, so the patches have the crops' scale after resizing.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_dilation

from ..params import Independence
from .independence import distill, predict_masks, train_independence


def crop_boxes(masks: np.ndarray, margin: float) -> np.ndarray:
    """(N, 3) int64 square windows ``(y0, x0, side)`` around each (N, H, W) mask's bounding box, its
    longer side grown by ``margin`` of it on each side (at least 4 px); an empty mask: the whole image."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got {masks.shape}")
    _, h, w = masks.shape
    out = np.zeros((len(masks), 3), np.int64)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if not len(ys):
            out[i] = (0, 0, min(h, w))
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        side = max(4, math.ceil(max(y1 - y0, x1 - x0) * (1 + 2 * margin)))
        out[i] = (int(round((y0 + y1 - side) / 2)), int(round((x0 + x1 - side) / 2)), side)
    return out


def _resize(x: np.ndarray, side: int) -> torch.Tensor:
    """(H, W, C) float -> (C, side, side), bilinear (antialiased when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(2, 0, 1)[None]
    if t.shape[-1] == side and t.shape[-2] == side:
        return t[0]
    return F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False,
                         antialias=side < t.shape[-1])[0]


def _window(img: np.ndarray, y0: int, x0: int, side: int) -> np.ndarray:
    """The ``side`` x ``side`` window at (y0, x0) of an (H, W, C) image, edge pixels repeated outside it."""
    h, w = img.shape[:2]
    pad = ((max(0, -y0), max(0, y0 + side - h)), (max(0, -x0), max(0, x0 + side - w)), (0, 0))
    cut = img[max(0, y0):min(h, y0 + side), max(0, x0):min(w, x0 + side)]
    return np.pad(cut, pad, mode="edge")


def crop_images(images: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """(N, side, side, 3) uint8: each image's window resized to ``side``."""
    out = [_resize(_window(img.astype(np.float32), *b), side).permute(1, 2, 0).numpy() for img, b in zip(images, boxes)]
    return np.clip(np.rint(np.stack(out)), 0, 255).astype(np.uint8) if out else np.zeros((0, side, side, 3), np.uint8)


def crop_masks(masks: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """(N, side, side) float32: each mask's window resized to ``side`` (outside the image: 0)."""
    out = []
    for m, (y0, x0, s) in zip(np.asarray(masks, np.float32), boxes):
        h, w = m.shape
        win = np.zeros((s, s), np.float32)
        ys, xs = slice(max(0, y0), min(h, y0 + s)), slice(max(0, x0), min(w, x0 + s))
        win[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = m[ys, xs]
        out.append(_resize(win[..., None], side)[0].numpy())
    return np.stack(out) if out else np.zeros((0, side, side), np.float32)


def paste_back(crop_maps: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`crop_masks`: (N, H, W) float32 maps, each crop map resized to its window and
    put in place (0 outside the window)."""
    h, w = shape
    out = np.zeros((len(crop_maps), h, w), np.float32)
    for i, (cm, (y0, x0, s)) in enumerate(zip(crop_maps, boxes)):
        win = _resize(np.asarray(cm, np.float32)[..., None], int(s))[0].numpy()
        ys, xs = slice(max(0, y0), min(h, y0 + s)), slice(max(0, x0), min(w, x0 + s))
        out[i, ys, xs] = win[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


def background_patches(images: np.ndarray, masks: np.ndarray | None, window_sides: np.ndarray, side: int,
                       per_image: int, rng: np.random.Generator) -> np.ndarray:
    """(M, side, side, 3) uint8 patches: up to ``per_image`` windows per image that lie inside it and
    miss its one-pixel-dilated mask (``masks`` None: no mask), each window's side drawn from
    ``window_sides``, resized to ``side``."""
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    masks = np.zeros((n, h, w), bool) if masks is None else np.asarray(masks, bool)
    out = []
    for img, m in zip(images, masks):
        blocked = np.pad(binary_dilation(m, iterations=1).astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        for s in rng.choice(window_sides, size=per_image):
            s = int(min(s, h, w))
            free = (blocked[s:, s:] - blocked[:-s, s:] - blocked[s:, :-s] + blocked[:-s, :-s]) == 0
            ys, xs = np.nonzero(free)
            if len(ys):
                k = int(rng.integers(len(ys)))
                out.append(_resize(img[ys[k]:ys[k] + s, xs[k]:xs[k] + s].astype(np.float32), side).permute(1, 2, 0).numpy())
    if not out:
        raise ValueError("no background patch: every window of the crops' sizes touches an object mask; pass "
                         "background images or lower independence.crop_margin")
    return np.clip(np.rint(np.stack(out)), 0, 255).astype(np.uint8)


def learn_soft_masks(images: np.ndarray, attention_masks: np.ndarray, backgrounds: np.ndarray | None,
                     cfg: Independence, classes: list[str] | None = None, progress: bool = True) -> dict:
    """Full-image soft masks (N, H, W) float32 of the teacher (``"teacher"``) and of the distilled
    student (``"student"``, = teacher when ``independence.distill_steps`` is 0), and the windows
    (``"boxes"``). One teacher and student per class when ``independence.per_class`` and ``classes``
    are given, one for all images otherwise; ``backgrounds`` None: patches of ``images`` beside
    their attention masks."""
    images, attention_masks = np.asarray(images), np.asarray(attention_masks, bool)
    if images.ndim != 4 or images.shape[:3] != attention_masks.shape or images.dtype != np.uint8:
        raise ValueError(f"images {images.shape} {images.dtype} and attention masks {attention_masks.shape}: "
                         f"need (N, H, W, 3) uint8 images and one (H, W) mask per image")
    if classes is not None and len(classes) != len(images):
        raise ValueError(f"{len(classes)} classes for {len(images)} images: one class per image")
    boxes = crop_boxes(attention_masks, cfg.crop_margin)
    crops = crop_images(images, boxes, cfg.crop_side)
    groups = ({c: [i for i, k in enumerate(classes) if k == c] for c in sorted(set(classes))}
              if cfg.per_class and classes is not None else {"all": list(range(len(images)))})
    teacher = np.zeros((len(images), cfg.crop_side, cfg.crop_side), np.float32)
    student = teacher.copy()
    for g, idx in enumerate(groups.values()):
        gcfg = cfg.model_copy(update={"seed": cfg.seed + 1000 * g})
        rng = np.random.default_rng([gcfg.seed, 4])
        sides = boxes[idx, 2]
        pool = (background_patches(images[idx], attention_masks[idx], sides, cfg.crop_side, cfg.patches_per_image, rng)
                if backgrounds is None else
                background_patches(backgrounds, None, sides, cfg.crop_side, cfg.patches_per_image, rng))
        models = train_independence(crops[idx], pool, gcfg, progress=progress)
        teacher[idx] = predict_masks(models, crops[idx])
        if cfg.distill_steps:
            net, _ = distill(models, crops[idx], pool, gcfg, progress=progress)
            student[idx] = predict_masks(net, crops[idx])
        else:
            student[idx] = teacher[idx]
    shape = images.shape[1:3]
    return {"teacher": paste_back(teacher, boxes, shape), "student": paste_back(student, boxes, shape), "boxes": boxes}


def learn_masks(images: np.ndarray, attention_masks: np.ndarray, backgrounds: np.ndarray | None, cfg: Independence,
                classes: list[str] | None = None, progress: bool = True) -> np.ndarray:
    """Bool masks (N, H, W): the distilled student's (or, without distillation, the teacher's) soft
    masks above ``independence.threshold`` (see :func:`learn_soft_masks`)."""
    return learn_soft_masks(images, attention_masks, backgrounds, cfg, classes, progress)["student"] > cfg.threshold
