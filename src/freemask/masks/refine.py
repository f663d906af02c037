"""Affinity refinement of attention maps and per-image threshold selection (paper §3.1.2).

The paper refines the object token's attention map with AffinityNet (Ahn & Kwak 2018) and then
chooses the threshold of the final mask *per image*, from a grid, as the one whose mask agrees
best (IoU) with AffinityNet's output -- no per-class constant.

AffinityNet's inference, as in its paper: the foreground score is the attention map, the
background score is ``(1 - map) ** bg_power`` (a larger power shrinks the background's claim on
uncertain pixels), both are propagated by a random walk on pixel affinities, and a pixel is
foreground where its propagated foreground score beats its propagated background score. The walk
spreads each score inside regions that belong together and stops it at region borders.

Training-free affinities come from the generator's own self-attention: row i of a self-attention
map says which pixels pixel i attends to, and pixels of one object attend to each other. As in
AffinityNet, affinities are raised to the power ``beta`` (sharpening) and row-normalised into a
transition matrix ``T``; a score ``s`` becomes ``T^steps @ s``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def transition_matrix(affinity: torch.Tensor, beta: float) -> torch.Tensor:
    """(B, N, N) non-negative affinities -> row-stochastic (B, N, N) after the power ``beta``."""
    if affinity.ndim != 3 or affinity.shape[1] != affinity.shape[2]:
        raise ValueError(f"affinity must be (batch, N, N), got {tuple(affinity.shape)}")
    if (affinity < 0).any():
        raise ValueError("affinities must be non-negative (attention probabilities are)")
    # one float64 copy, then in place: a (B, N, N) batch at 32x32 is 128 MiB per float64 copy per 16
    # images (docs/decisions.md#mask-refinement)
    a = affinity.to(torch.float64, copy=True)
    if beta != 1:
        a.pow_(beta)
    return a.div_(a.sum(-1, keepdim=True).clamp_min(1e-300))


def random_walk(scores: np.ndarray, transition: torch.Tensor, steps: int) -> np.ndarray:
    """Propagate (B, H, W) scores ``steps`` times with a (B, r*r, r*r) transition matrix.

    Scores are brought to the r x r grid of the affinities (area average), propagated and brought
    back to H x W (bilinear). A row-stochastic walk keeps the scores' scale, so two walked scores
    can be compared pixel by pixel."""
    B, H, W = scores.shape
    n = transition.shape[-1]
    r = int(round(n ** 0.5))
    if r * r != n or transition.shape[0] != B:
        raise ValueError(f"affinity {tuple(transition.shape)} does not fit {B} maps on a square grid")
    v = F.adaptive_avg_pool2d(torch.from_numpy(np.asarray(scores, np.float64))[:, None], (r, r)).reshape(B, n, 1)
    for _ in range(steps):
        v = torch.bmm(transition, v)
    return F.interpolate(v.reshape(B, 1, r, r), size=(H, W), mode="bilinear", align_corners=False)[:, 0].numpy()


def affinity_foreground(maps: np.ndarray, transition: torch.Tensor, steps: int, bg_power: float) -> np.ndarray:
    """AffinityNet's output for (B, H, W) maps in [0, 1]: where the walked foreground score beats
    the walked background score ``(1 - map) ** bg_power``. ``transition``: ``transition_matrix(affinity,
    beta)``. Returns bool (B, H, W)."""
    if np.nanmin(maps) < 0 or np.nanmax(maps) > 1:
        raise ValueError("attention maps must be normalised to [0, 1] before refinement")
    fg = random_walk(maps, transition, steps)
    bg = random_walk((1.0 - maps) ** bg_power, transition, steps)
    return fg > bg


def threshold_grid(step: float) -> np.ndarray:
    """The candidate thresholds ``step, 2 * step, ...`` below 1 (``generate.refine.grid_step``)."""
    if not 0 < step < 1:
        raise ValueError(f"threshold grid step must be in (0, 1), got {step}")
    return np.arange(step, 1.0 - 1e-9, step)


def select_threshold(raw: np.ndarray, target: np.ndarray, grid: np.ndarray) -> float:
    """The grid threshold whose mask of ``raw`` has the highest IoU with the boolean ``target``.
    Ties go to the lowest threshold."""
    masks = raw[None] > grid[:, None, None]
    inter = (masks & target).sum((1, 2))
    union = (masks | target).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(grid[int(np.argmax(iou))])


def affinity_masks(maps: np.ndarray, transition: torch.Tensor, steps: int, bg_power: float,
                   grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paper §3.1.2 for a batch: AffinityNet's foreground, the chosen thresholds, and the masks of the
    raw maps. ``transition``: ``transition_matrix(affinity, beta)`` (computed once by the caller, as
    the mask-quality table applies this to several maps of one recording)."""
    target = affinity_foreground(maps, transition, steps, bg_power)
    taus = np.array([select_threshold(m, t, grid) for m, t in zip(maps, target)], dtype=np.float32)
    return target, taus, maps > taus[:, None, None]
