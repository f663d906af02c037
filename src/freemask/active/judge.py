"""The filter of Algorithm 1 judged directly, not through the final mIoU.

- **Ranking quality** (:func:`auc`): how well a low score S(x) finds the samples whose pseudo-mask is
  bad, a bad mask being one whose IoU against a reference (the oracle segmenter's prediction, or
  the truth where there is one) is below ``bad_below``. 1 is a perfect ranking, 0.5 chance.
- **Catch rate** (:func:`corrupt`, :func:`catch_rate`): a known share of the fresh masks is spoilt
  on purpose, each in one of three ways in turn, and the samples the filter drops (the bottom
  ``1 - retain`` by score) are compared with the spoilt ones:
  - ``shift``: the object's mask moved by half its bounding-box side, in a random direction;
  - ``erode``: the mask eroded until at most half of it is left;
  - ``swap``: the sample labelled as another class (its mask and the class it claims), as when
    the generator draws another object than the prompt asked for.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..metrics.segmentation import IGNORE_INDEX
from .select import n_kept

KINDS = ("shift", "erode", "swap")


def auc(values: np.ndarray, bad: np.ndarray) -> float | None:
    """The probability that a random bad sample scores below a random good one (ties count half):
    the area under the ROC curve of ``-values`` as a detector of ``bad``; None without both kinds."""
    values, bad = np.asarray(values, np.float64), np.asarray(bad, bool)
    if len(values) != len(bad):
        raise ValueError(f"{len(values)} scores for {len(bad)} bad flags")
    low, high = values[bad], values[~bad]
    if not len(low) or not len(high):
        return None
    below = (low[:, None] < high[None, :]).sum() + 0.5 * (low[:, None] == high[None, :]).sum()
    return float(below / (len(low) * len(high)))


def _shift(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    side = max(np.ptp(ys) + 1, np.ptp(xs) + 1)
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = (int(round(side / 2 * np.sin(angle))), int(round(side / 2 * np.cos(angle))))
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h + min(-dy, 0),
                                                                       max(-dx, 0):w + min(-dx, 0)]
    return out


def _erode(mask: np.ndarray) -> np.ndarray:
    area, out = mask.sum(), mask
    while out.sum() > area / 2:
        smaller = ndimage.binary_erosion(out)
        if not smaller.any():
            break
        out = smaller
    return out


def corrupt(labels: np.ndarray, classes: list[int], share: float, num_classes: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, list[int], np.ndarray, list[str]]:
    """A copy of single-object label maps (N, H, W) with round(``share`` x N) of them spoilt (see the
    module doc; the kinds in turn, the samples drawn by ``rng``). Returns the labels, the classes the
    samples now claim, which were spoilt and how (``""`` for untouched). Undecided (255) pixels stay
    undecided; ``num_classes`` counts the object classes (ids 1..num_classes)."""
    if not 0 <= share <= 1:
        raise ValueError(f"the corrupted share must be in [0, 1], got {share}")
    out, claims = labels.copy(), list(classes)
    n = len(labels)
    chosen = sorted(rng.choice(n, size=n_kept(n, share) if share else 0, replace=False).tolist())
    how = [""] * n
    for j, i in enumerate(chosen):
        kind = KINDS[j % len(KINDS)]
        c = classes[i]
        mask, undecided = labels[i] == c, labels[i] == IGNORE_INDEX
        if kind == "swap":
            other = int(rng.choice([k for k in range(1, num_classes + 1) if k != c]))
            out[i][mask] = other
            claims[i] = other
        else:
            spoilt = _shift(mask, rng) if kind == "shift" else _erode(mask)
            out[i] = np.where(undecided, IGNORE_INDEX, np.where(spoilt, c, 0)).astype(labels.dtype)
        how[i] = kind
    return out, claims, np.array([bool(h) for h in how]), how


def catch_rate(values: np.ndarray, keys: list[str], spoilt: np.ndarray, how: list[str], retain: float) -> dict:
    """Precision and recall of the samples the filter drops (all but the top ``retain`` share by
    ``values``, ties broken by key as :func:`freemask.active.select.select_top` does) as a detector of
    the ``spoilt`` ones, and the recall per kind of spoiling."""
    from .select import select_top

    kept = np.zeros(len(keys), bool)
    kept[select_top(keys, values, retain)] = True
    dropped = ~kept
    caught = dropped & spoilt
    out = {"dropped": int(dropped.sum()), "spoilt": int(spoilt.sum()),
           "precision": round(float(caught.sum() / dropped.sum()), 6) if dropped.any() else None,
           "recall": round(float(caught.sum() / spoilt.sum()), 6) if spoilt.any() else None}
    for kind in KINDS:
        of_kind = np.array([h == kind for h in how])
        out[f"recall_{kind}"] = round(float((dropped & of_kind).sum() / of_kind.sum()), 6) if of_kind.any() else None
    return out
