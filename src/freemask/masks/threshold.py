"""From an attention map to a binary mask: normalisation and threshold rules."""
from __future__ import annotations

import numpy as np


def normalize01(m: np.ndarray) -> np.ndarray:
    """Min-max normalise each map over its last two axes to [0, 1]."""
    lo = m.min(axis=(-2, -1), keepdims=True)
    hi = m.max(axis=(-2, -1), keepdims=True)
    return (m - lo) / np.maximum(hi - lo, 1e-8)


def otsu_threshold(m: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of a [0, 1] map (maximises the between-class variance of ``m > t``)."""
    hist, edges = np.histogram(m.ravel(), bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    var = w0 * w1 * (m0 - m1) ** 2
    best = np.flatnonzero(var >= var.max() * (1 - 1e-9))
    # between two well-separated modes every empty bin ties: take the middle of the plateau;
    # the threshold is the upper edge of the last bin counted as background.
    return float(edges[best[len(best) // 2] + 1])


def threshold(m: np.ndarray, rule: str, value: float = 0.5) -> np.ndarray:
    """Binary mask of a normalised map by ``rule`` ('fixed' at ``value`` or 'otsu')."""
    if rule == "fixed":
        return m > value
    if rule == "otsu":
        return m > otsu_threshold(m)
    raise KeyError(f"threshold() applies generate.threshold.rule fixed | otsu, not {rule!r} "
                   f"(the other rules go through masks.rules.masks_from_store)")
