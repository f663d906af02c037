"""Evaluation of trained segmenters on a labelled split."""
from __future__ import annotations

import numpy as np

from .segmentation import confusion_matrix, summarize


def evaluate_predictions(pred: np.ndarray, gt: np.ndarray, class_names: list[str]) -> dict:
    conf = confusion_matrix(pred, gt, len(class_names))
    out = summarize(conf, class_names)
    out["n_images"] = int(len(gt))
    return out
