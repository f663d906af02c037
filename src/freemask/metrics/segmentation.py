"""Semantic-segmentation metrics: confusion matrix, per-class IoU, mIoU, pixel accuracy, mask IoU.

Conventions: labels are class indices ``0..K-1`` with background = 0 counted as a class;
``ignore_index`` pixels in the ground truth are skipped (whatever was predicted there). The
confusion matrix has ground truth along rows and predictions along columns.
"""
from __future__ import annotations

import numpy as np

from ..labels import IGNORE_INDEX  # noqa: F401  (re-exported)


def _check_labels(arr: np.ndarray, name: str, num_classes: int, ignore_index: int | None) -> None:
    if arr.size == 0:
        return
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    vals = np.unique(arr)
    bad = vals[(vals < 0) | (vals >= num_classes)]
    if ignore_index is not None:
        bad = bad[bad != ignore_index]
    if bad.size:
        raise ValueError(
            f"{name} contains label {int(bad[0])} (all bad values: {bad.tolist()}); "
            f"expected 0..{num_classes - 1}" + (f" or {ignore_index} (ignore)" if ignore_index is not None else "")
        )


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """(K, K) int64 counts, ``conf[g, p]`` = pixels with ground truth g predicted as p.

    Pixels whose ground truth is ``ignore_index`` are skipped. A prediction equal to
    ``ignore_index`` on a non-ignored pixel is an error, like any other label >= num_classes.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    _check_labels(gt, "gt", num_classes, ignore_index)
    keep = np.ones(gt.shape, bool) if ignore_index is None else gt != ignore_index
    p = pred[keep].astype(np.int64)
    g = gt[keep].astype(np.int64)
    _check_labels(p, "pred", num_classes, None)
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from both gt and pred."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def pixel_accuracy(conf: np.ndarray) -> float:
    """Share of non-ignored pixels predicted correctly (NaN if there are none)."""
    conf = np.asarray(conf)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def summarize(conf: np.ndarray, class_names: list[str]) -> dict:
    """``{"mIoU", "per_class": {name: iou or None}, "pixel_accuracy"}``.

    mIoU is the mean over classes present in gt or pred (background included); None/NaN if none.
    """
    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {conf.shape}")
    if len(class_names) != conf.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {conf.shape[0]}-class confusion matrix")
    ious = iou_per_class(conf)
    miou = float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")
    return {
        "mIoU": miou,
        "per_class": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, ious)},
        "pixel_accuracy": pixel_accuracy(conf),
    }


class IoU:
    """Namespace for the IoU helpers (``IoU.iou_per_class``, ``IoU.summarize``, ...)."""

    confusion_matrix = staticmethod(confusion_matrix)
    iou_per_class = staticmethod(iou_per_class)
    pixel_accuracy = staticmethod(pixel_accuracy)
    summarize = staticmethod(summarize)


def mask_iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two boolean masks of the same shape over the pixels not in ``ignore``; 1.0 if both
    are empty there."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != a.shape:
            raise ValueError(f"ignore mask shape {ignore.shape} differs from the masks' {a.shape}")
        a, b = a & ~ignore, b & ~ignore
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def per_class_mean(values: np.ndarray, classes: list[str], order: list[str] | tuple[str, ...]) -> dict:
    """``{"mean", "per_class"}`` of per-sample ``values`` grouped by the samples' ``classes``: the
    per-class means (classes in ``order`` that have samples, rounded to 4 places) and their mean, so
    every class weighs the same whatever its sample count."""
    values, classes_arr = np.asarray(values, dtype=float), np.asarray(classes)
    if values.shape != classes_arr.shape:
        raise ValueError(f"{values.shape} values for {classes_arr.shape} classes")
    unknown = sorted(set(classes) - set(order))
    if unknown:
        raise ValueError(f"classes {unknown} are not in the class order {list(order)}")
    per = {c: round(float(values[classes_arr == c].mean()), 4) for c in order if (classes_arr == c).any()}
    return {"mean": round(float(np.mean(list(per.values()))), 4) if per else None, "per_class": per}
