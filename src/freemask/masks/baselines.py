"""Baseline mask rules kept for the paper's comparisons: DiffuMask and Dataset Diffusion.

DiffuMask (Wu et al., ICCV 2023) thresholds each class's cross-attention at a constant of its own,
on a fusion of the resolutions chosen for that class: each resolution's map is normalised and the
normalised maps are averaged with equal weight (the authors' script divides by the max; here maps
are min-max normalised like every map of this project).

Dataset Diffusion (Nguyen et al., NeurIPS 2023) refines the cross-attention map with the
self-attention raised to a power, ``A_self^tau @ A_cross`` ("self-attention exponentiation"),
min-max normalises the result, and leaves a band of uncertain scores out of training (label 255).
The self-attention of a store is a mean of row-stochastic matrices, so ``A^tau @ m`` is ``tau``
steps of the random walk of ``refine``; and because a row-stochastic walk maps ``a * m + b`` to
``a * walk(m) + b``, min-max normalising before or after the walk gives the same refined map.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .refine import random_walk
from .result import ObjectMasks
from .threshold import normalize01


def diffumask_masks(maps_by_resolution: Mapping[int, np.ndarray], classes: Sequence[str],
                    thresholds: Mapping[str, float], resolutions: Mapping[str, Sequence[int]]) -> ObjectMasks:
    """DiffuMask-style masks of B samples.

    ``maps_by_resolution``: {resolution: (B, H, W) cross-attention maps of the object token from the
    layers at that resolution, at image size}; ``classes``: the B samples' classes; ``thresholds`` and
    ``resolutions``: per class. Sample b's map is the mean of the min-max normalised maps at
    ``resolutions[classes[b]]``, its mask that map ``> thresholds[classes[b]]``."""
    if not maps_by_resolution:
        raise ValueError("no attention maps given")
    B = len(next(iter(maps_by_resolution.values())))
    if len(classes) != B:
        raise ValueError(f"{len(classes)} classes for {B} maps")
    fused, masks = [], []
    for b, cls in enumerate(classes):
        if cls not in thresholds or cls not in resolutions:
            raise KeyError(f"class {cls!r} has no DiffuMask threshold/resolutions "
                           f"(generate.diffumask.thresholds / generate.diffumask.resolutions)")
        missing = [r for r in resolutions[cls] if r not in maps_by_resolution]
        if missing:
            raise KeyError(f"class {cls!r} asks for resolutions {missing}; maps given at {sorted(maps_by_resolution)}")
        m = np.mean([normalize01(maps_by_resolution[r][b]) for r in resolutions[cls]], axis=0)
        fused.append(m)
        masks.append(m > thresholds[cls])
    return ObjectMasks.binary(np.stack(fused).astype(np.float32), np.stack(masks))


def self_attention_power(maps: np.ndarray, transition: torch.Tensor, tau: int) -> np.ndarray:
    """``A_self^tau @ map`` for (B, H, W) maps, min-max normalised per map. ``transition``: the
    (B, r*r, r*r) self-attention with rows summing to one, ``refine.transition_matrix(affinity, 1.0)``
    (scores are brought to its grid and back as in ``refine.random_walk``)."""
    if tau < 1:
        raise ValueError(f"tau must be >= 1, got {tau}")
    return normalize01(random_walk(maps, transition, steps=tau)).astype(np.float32)


def dataset_diffusion_masks(maps: np.ndarray, transition: torch.Tensor, tau: int, low: float, high: float) -> ObjectMasks:
    """Dataset-Diffusion-style masks: object where the refined score is ``>= high``, ignored where
    it is in ``[low, high)``, background below ``low``."""
    if not 0 <= low < high <= 1:
        raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
    refined = self_attention_power(maps, transition, tau)
    return ObjectMasks(refined, refined >= high, (refined >= low) & (refined < high))
