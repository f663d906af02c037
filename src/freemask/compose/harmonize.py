"""Harmonization of pasted objects (paper §3.2): make an object pasted from one image look lit like
the scene it joins. Methods (``compose.harmonize``):

- ``statistics``: colour-statistics matching in CIE Lab (Reinhard et al. 2001, restricted to the
  object): inside the mask, each Lab channel's mean and standard deviation are moved toward those of
  a ring of background pixels around the object (:func:`statistics`);
- ``rain``: the RAIN-style network of :mod:`freemask.compose.rain`, trained on toy pairs
  (:func:`train_harmonizer`) or loaded from a checkpoint folder (:func:`load_harmonizer`);
- ``none``: the composite unchanged (the ablation).

Every method changes only the pixels inside the mask. Why the default and what each measures:
docs/harmonization.md.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..params import Harmonize
from ..world.relight import relit_pair
from ..world.spec import BACKGROUNDS, CLASSES
from .colour import lab_to_rgb, rgb_to_lab, to_uint8
from .rain import NetShape, RainNet, TrainSettings, apply_rain, load_harmonizer, save_harmonizer, train_rain

METHODS = ("statistics", "rain", "none")
__all__ = ["METHODS", "harmonize", "statistics", "load_harmonizer", "train_harmonizer", "relit_pairs", "delta_e"]

# seeds of the toy pairs: [seed, kind, index]; the kinds keep training, validation and the
# benchmark's pairs apart
KIND_TRAIN, KIND_VAL, KIND_BENCHMARK = 1, 2, 3


def ring_mask(mask: np.ndarray, ring: float) -> np.ndarray:
    """The background pixels the object is compared with: outside ``mask`` and within
    ``ring`` x the object's bounding-box side (chessboard distance, at least 1 px) of it; ``ring``
    0 = every pixel outside the mask."""
    if ring == 0:
        return ~mask
    ys, xs = np.nonzero(mask)
    width = max(1, int(np.ceil(ring * max(np.ptp(ys) + 1, np.ptp(xs) + 1))))
    return (ndimage.distance_transform_cdt(~mask, metric="chessboard") <= width) & ~mask


def statistics(image: np.ndarray, mask: np.ndarray, ring: float = 0.25, strength: float = 1.0) -> np.ndarray:
    """(H, W, 3) uint8 image with the object in (H, W) bool ``mask`` matched to its surroundings:
    per Lab channel, ``(x - mean_obj) * s + mean_obj + strength * (mean_bg - mean_obj)`` with
    ``s = 1 + strength * (std_bg / std_obj - 1)`` (a flat channel keeps its spread), the background
    being :func:`ring_mask`. Pixels outside the mask are returned bit for bit; an empty mask or one
    with no background around it leaves the image unchanged."""
    _check(image, mask)
    if not 0 <= strength <= 1:
        raise ValueError(f"harmonize.strength must be in [0, 1], got {strength}")
    out = image.copy()
    bg = ring_mask(mask, ring) if mask.any() else mask
    if not bg.any():
        return out
    fg_lab, bg_lab = rgb_to_lab(image[mask]), rgb_to_lab(image[bg])
    mu_f, sd_f = fg_lab.mean(0), fg_lab.std(0)
    mu_b, sd_b = bg_lab.mean(0), bg_lab.std(0)
    ratio = np.where(sd_f > 1e-6, sd_b / np.maximum(sd_f, 1e-6), 1.0)
    scale = 1 + strength * (ratio - 1)
    lab = (fg_lab - mu_f) * scale + mu_f + strength * (mu_b - mu_f)
    out[mask] = to_uint8(lab_to_rgb(lab))
    return out


def harmonize(image: np.ndarray, mask: np.ndarray, method: str, net: RainNet | None = None,
              ring: float = 0.25, strength: float = 1.0) -> np.ndarray:
    """The (H, W, 3) uint8 ``image`` with the object in (H, W) bool ``mask`` harmonized by ``method``
    (``statistics`` with ``ring`` and ``strength``, ``rain`` with ``net``, or ``none``)."""
    _check(image, mask)
    if method == "none":
        return image.copy()
    if method == "statistics":
        return statistics(image, mask, ring, strength)
    if method == "rain":
        if net is None:
            raise ValueError("compose.harmonize=rain needs a network: load one with load_harmonizer(folder)")
        return apply_rain(net, image[None], mask[None])[0]
    raise KeyError(f"compose.harmonize must be one of {', '.join(METHODS)}, got {method!r}")


def _check(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2] or mask.dtype != bool:
        raise ValueError(f"mask must be (H, W) bool of the image's size {image.shape[:2]}, got {mask.shape} {mask.dtype}")


def relit_pairs(seed: int, kind: int, n: int, resolution: int, balanced: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str, str]]]:
    """``n`` toy pairs (:func:`freemask.world.relight.relit_pair`) as uint8 composites, uint8 targets,
    bool masks and their (class, source background, target background). The i-th pair's seed is
    ``[seed, kind, i]``; its combination is drawn from that seed, or with ``balanced`` the i-th of
    every (class, source, target) in turn."""
    combos = list(itertools.product(CLASSES, BACKGROUNDS, BACKGROUNDS))
    comps, targets, masks, what = [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, kind, i])
        combo = combos[i % len(combos)] if balanced else combos[int(rng.integers(len(combos)))]
        comp, target, mask = relit_pair(rng, *combo, resolution)
        comps.append(to_uint8(comp)), targets.append(to_uint8(target)), masks.append(mask), what.append(combo)
    return np.stack(comps), np.stack(targets), np.stack(masks), what


def delta_e(images: np.ndarray, targets: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the mean CIE76 colour difference (Euclidean distance in Lab) to the target over the
    masked pixels."""
    d = np.linalg.norm(rgb_to_lab(images) - rgb_to_lab(targets), axis=-1)
    return (d * masks).sum((1, 2)) / np.maximum(masks.sum((1, 2)), 1)


def train_harmonizer(cfg: Harmonize, out_dir: str | Path, resolution: int = 32, progress: bool = True) -> dict:
    """Train the RAIN network of ``cfg`` on ``cfg.train_pairs`` toy pairs at ``resolution``, save it to
    ``out_dir``; returns the mean colour error (:func:`delta_e`) on ``cfg.val_pairs`` held-out pairs
    without harmonization and with the net, and the loss at the start and the end."""
    comps, targets, masks, _ = relit_pairs(cfg.seed, KIND_TRAIN, cfg.train_pairs, resolution)
    net, losses = train_rain(comps, targets, masks, NetShape(width=cfg.width),
                             TrainSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed),
                             progress=progress)
    save_harmonizer(net, out_dir)
    vc, vt, vm, _ = relit_pairs(cfg.seed, KIND_VAL, cfg.val_pairs, resolution, balanced=True)
    none, rain = float(delta_e(vc, vt, vm).mean()), float(delta_e(apply_rain(net, vc, vm), vt, vm).mean())
    k = max(1, min(50, len(losses) // 5))
    return {"val_delta_e_none": round(none, 3), "val_delta_e_rain": round(rain, 3),
            "val_ratio_rain_to_none": round(rain / none, 4),
            "loss_first_steps": round(float(np.mean(losses[:k])), 5),
            "loss_last_steps": round(float(np.mean(losses[-k:])), 5)}
