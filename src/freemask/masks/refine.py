"""Affinity refinement of attention maps and per-image threshold selection (paper §3.1.2).

The paper refines the object token's attention map with AffinityNet (Ahn & Kwak 2018): a
random walk on pixel affinities spreads the map inside regions that belong together and away
from regions that do not. The threshold of the final mask is then chosen *per image*, from a
grid, as the one whose mask agrees best (IoU) with the refined map -- no per-class constant.

Training-free affinities come from the generator's own self-attention: row i of a self-attention
map says which pixels pixel i attends to, and pixels of one object attend to each other. As in
AffinityNet, affinities are raised to the power ``beta`` (sharpening) and row-normalised into a
transition matrix ``T``; the refined map is ``T^steps @ map``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .threshold import normalize01, otsu_threshold


def transition_matrix(affinity: torch.Tensor, beta: float) -> torch.Tensor:
    """(B, N, N) non-negative affinities -> row-stochastic (B, N, N) after the power ``beta``."""
    if affinity.ndim != 3 or affinity.shape[1] != affinity.shape[2]:
        raise ValueError(f"affinity must be (batch, N, N), got {tuple(affinity.shape)}")
    if (affinity < 0).any():
        raise ValueError("affinities must be non-negative (attention probabilities are)")
    a = affinity.double() ** beta
    return a / a.sum(-1, keepdim=True).clamp_min(1e-300)


def random_walk(maps: np.ndarray, affinity: torch.Tensor, beta: float, steps: int) -> np.ndarray:
    """Refine (B, H, W) maps with ``steps`` random-walk steps on (B, r*r, r*r) affinities.

    Maps are brought to the affinity's r x r grid (area average), propagated, brought back to
    H x W (bilinear) and min-max normalised per image."""
    B, H, W = maps.shape
    n = affinity.shape[-1]
    r = int(round(n ** 0.5))
    if r * r != n or affinity.shape[0] != B:
        raise ValueError(f"affinity {tuple(affinity.shape)} does not fit {B} maps on a square grid")
    t = transition_matrix(affinity, beta)
    v = F.adaptive_avg_pool2d(torch.from_numpy(maps).double()[:, None], (r, r)).reshape(B, n, 1)
    for _ in range(steps):
        v = torch.bmm(t, v)
    out = F.interpolate(v.reshape(B, 1, r, r), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    return normalize01(out.numpy()).astype(np.float32)


def select_threshold(raw: np.ndarray, refined: np.ndarray, grid: np.ndarray) -> float:
    """The grid threshold whose mask of ``raw`` has the highest IoU with the refined map's mask
    (the refined map binarised by Otsu). Ties go to the lowest threshold."""
    target = refined > otsu_threshold(refined)
    masks = raw[None] > grid[:, None, None]
    inter = (masks & target).sum((1, 2))
    union = (masks | target).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(grid[int(np.argmax(iou))])


def affinity_masks(maps: np.ndarray, affinity: torch.Tensor, beta: float, steps: int,
                   grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paper §3.1.2 for a batch: refined maps, the chosen thresholds, and the masks of the raw maps."""
    refined = random_walk(maps, affinity, beta, steps)
    taus = np.array([select_threshold(m, r, grid) for m, r in zip(maps, refined)], dtype=np.float32)
    return refined, taus, maps > taus[:, None, None]
