"""Zero-shot scores: mIoU over seen classes, over unseen classes, and their harmonic mean.

The paper's Table 4 uses PASCAL VOC's 15 + 5 split (unseen: potted plant, sheep, sofa, train,
tv monitor, as SPNet introduced it) and follows ZegFormer (Ding et al., 2022) and SIGN (§4.1).
Whether background counts is a convention that differs between the works Table 4 compares:

- ``background="ignore"`` (default): background ground-truth pixels are not scored and seen
  mIoU is over the 15 seen object classes. SPNet did so, CaGNet follows it (its authors say so
  in the CaGNet repository's issue #1), and ZegFormer's VOC preparation maps background to the
  ignore label. It is the protocol the paper cites.
- ``background="seen"``: background is a 16th seen class, scored like any other; ZS3Net's code
  does this (its seen indices are all 21 classes less the unseen ones).

Per-class IoU follows ``segmentation.iou_per_class`` on the full confusion matrix (a seen
pixel predicted as an unseen class is a false positive of that unseen class); a class absent
from both ground truth and prediction is left out of its mean, as in ``summarize``.
Harmonic = 2·S·U / (S + U); it reproduces Table 4's rows for the other methods to the printed
rounding (ZS3: 78.0, 21.2 -> 33.3; ZegFormer: 86.4, 63.6 -> 73.3), but not the paper's own rows,
which print about 1.4 more (ResNet-50: 63.9, 57.0 -> 60.3, printed 61.6).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .segmentation import iou_per_class

VOC_UNSEEN = ("pottedplant", "sheep", "sofa", "train", "tvmonitor")
BACKGROUND_MODES = ("ignore", "seen")


def harmonic_mean(seen: float, unseen: float) -> float:
    """2·S·U / (S + U); 0 when both are 0, NaN when either is NaN."""
    if np.isnan(seen) or np.isnan(unseen):
        return float("nan")
    if seen + unseen == 0:
        return 0.0
    return float(2 * seen * unseen / (seen + unseen))


def zero_shot_summary(conf: np.ndarray, class_names: Sequence[str], unseen: Sequence[str] = VOC_UNSEEN,
                      background: str = "ignore", background_name: str = "background") -> dict:
    """Seen / unseen / harmonic mIoU from a K x K confusion matrix (gt rows, predicted columns).

    Returns ``{"seen_mIoU", "unseen_mIoU", "harmonic", "seen": [...], "unseen": [...],
    "per_class": {name: iou or None}, "background": mode}``; ``per_class`` has the scored
    classes only (no background under ``"ignore"``).
    """
    if background not in BACKGROUND_MODES:
        raise ValueError(f"background must be one of {', '.join(BACKGROUND_MODES)}, got {background!r}")
    names = list(class_names)
    conf = np.asarray(conf, dtype=np.int64)
    if conf.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix {conf.shape} does not match {len(names)} class names")
    if background_name not in names:
        raise KeyError(f"background class {background_name!r} is not among the classes")
    for u in unseen:
        if u not in names:
            raise KeyError(f"unseen class {u!r} is not among the classes ({', '.join(names)})")
        if u == background_name:
            raise ValueError(f"background {background_name!r} cannot be an unseen class")
    bg = names.index(background_name)
    if background == "ignore":
        conf = conf.copy()
        conf[bg, :] = 0  # background ground truth is not scored, whatever was predicted there
    ious = dict(zip(names, iou_per_class(conf)))
    seen = [n for n in names if n not in unseen and (background == "seen" or n != background_name)]
    unseen = list(unseen)

    def mean(cls):
        vals = np.array([ious[c] for c in cls])
        return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")

    s, u = mean(seen), mean(unseen)
    return {
        "seen_mIoU": s, "unseen_mIoU": u, "harmonic": harmonic_mean(s, u),
        "seen": seen, "unseen": unseen, "background": background,
        "per_class": {n: (None if np.isnan(ious[n]) else float(ious[n])) for n in names if n in seen or n in unseen},
    }
