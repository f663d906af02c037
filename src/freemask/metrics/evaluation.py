"""Evaluation of trained segmenters on labelled splits."""
from __future__ import annotations

import numpy as np

from ..segmenters.mask2former import predict
from .segmentation import confusion_matrix, summarize

# the names the metrics files give the two segmenters of the toy pipeline
ROLES = {"synthetic": "synthetic", "real": "upper_bound"}


def evaluate_predictions(pred: np.ndarray, gt: np.ndarray, class_names: list[str]) -> dict:
    conf = confusion_matrix(pred, gt, len(class_names))
    out = summarize(conf, class_names)
    out["n_images"] = int(len(gt))
    return out


def evaluate_splits(models: dict, splits: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str],
                    batch_size: int) -> tuple[dict, dict]:
    """Every model of ``models`` ({"synthetic": m, "real": m}) on every split ({name: (images, labels)}).

    Returns the headline (per split: each segmenter's mIoU and the ratio synthetic / upper bound)
    and the details (per split: each segmenter's full summary, per-class IoU included).
    """
    headline, details = {}, {}
    for split, (images, labels) in splits.items():
        res = {ROLES[w]: evaluate_predictions(predict(m, images, batch_size), labels, class_names)
               for w, m in models.items()}
        syn, real = res["synthetic"]["mIoU"], res["upper_bound"]["mIoU"]
        ratio = round(syn / real, 4) if real > 0 else None
        headline[split] = {"synthetic_mIoU": syn, "upper_bound_mIoU": real, "ratio": ratio}
        details[split] = {**res, "ratio": ratio}
    return headline, details
