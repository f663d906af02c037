"""Scoring fresh samples with the current segmenter and keeping the top share (Algorithm 1, l. 6-11).

The score of a single-object sample is S(x) = IoU(f(x), y_pseudo) for the sample's own class:
the pixels the segmenter labels with the class against the pixels the pseudo-mask labels with it,
over the pixels the pseudo-mask does not leave undecided (255). A pseudo-mask with no pixel of its
class scores 0 whatever the prediction: the sample was asked to show an object and carries no
object label, so the discriminator cannot vouch for it (unlike
:func:`freemask.metrics.segmentation.mask_iou`, which calls two empty masks a perfect match).
"""
from __future__ import annotations

import math

import numpy as np

from ..metrics.segmentation import IGNORE_INDEX


def class_iou(pred: np.ndarray, pseudo: np.ndarray, cls: int, ignore_index: int = IGNORE_INDEX) -> float:
    """IoU of class ``cls`` between a predicted label map and a pseudo-mask, ``ignore_index`` pixels
    of the pseudo-mask skipped; 0.0 when the pseudo-mask has no (decided) pixel of ``cls``."""
    pred, pseudo = np.asarray(pred), np.asarray(pseudo)
    if pred.shape != pseudo.shape:
        raise ValueError(f"prediction and pseudo-mask shapes differ: {pred.shape} vs {pseudo.shape}")
    if not 0 < cls < ignore_index:
        raise ValueError(f"class id must be in 1..{ignore_index - 1} (0 is background), got {cls}")
    keep = pseudo != ignore_index
    truth = (pseudo == cls) & keep
    if not truth.any():
        return 0.0
    guess = (pred == cls) & keep
    return float((truth & guess).sum() / (truth | guess).sum())


def scores(preds: np.ndarray, pseudo: np.ndarray, classes: list[int]) -> np.ndarray:
    """Per-sample :func:`class_iou` of (N, H, W) predictions and pseudo-masks, one class per sample."""
    if not len(preds) == len(pseudo) == len(classes):
        raise ValueError(f"{len(preds)} predictions, {len(pseudo)} pseudo-masks, {len(classes)} classes")
    return np.array([class_iou(p, y, c) for p, y, c in zip(preds, pseudo, classes)], dtype=np.float64)


def n_kept(n: int, retain: float) -> int:
    """How many of ``n`` samples the top-``retain`` share is: round(retain * n), halves up."""
    if not 0 < retain <= 1:
        raise ValueError(f"active.retain must be in (0, 1], got {retain}")
    return min(n, math.floor(retain * n + 0.5 + 1e-9))


def select_top(keys: list[str], values: np.ndarray, retain: float) -> list[int]:
    """Indices of the top-``retain`` share of samples by score, best first; equal scores are ordered
    by key, so the cut is exact (``n_kept`` samples, not every sample tied at the threshold as
    Algorithm 1's S(x) >= S_alpha would take) and independent of the input order."""
    values = np.asarray(values, dtype=np.float64)
    if len(keys) != len(values):
        raise ValueError(f"{len(keys)} keys for {len(values)} scores")
    if len(set(keys)) != len(keys):
        raise ValueError("sample keys must be unique")
    if np.isnan(values).any():
        raise ValueError(f"NaN score for {[k for k, v in zip(keys, values) if np.isnan(v)]}")
    order = sorted(range(len(keys)), key=lambda i: (-values[i], keys[i]))
    return order[: n_kept(len(keys), retain)]
