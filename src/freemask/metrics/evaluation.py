"""Evaluation of trained segmenters on labelled splits."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..segmenters.mask2former import predict
from .grouping import HUMAN_VEHICLE, Grouping, collapse_confusion, grouped_summary
from .segmentation import confusion_matrix, summarize
from .zero_shot import zero_shot_summary

# the names the metrics files give the two segmenters of the toy pipeline
ROLES = {"synthetic": "synthetic", "real": "upper_bound"}
# Table 3's groups by profile: Cityscapes' Human and Vehicle; the toy world's analog, its vehicles
# and its look-alike pair (docs/report.md)
PROFILE_GROUPINGS = {
    "cityscapes": HUMAN_VEHICLE,
    "toy": Grouping({"vehicle": ("aeroplane", "car", "boat"), "disc": ("balloon", "ball")}),
}


def evaluate_predictions(pred: np.ndarray, gt: np.ndarray, class_names: list[str],
                         grouping: Grouping | None = None, unseen: Sequence[str] = ()) -> dict:
    """mIoU and per-class IoU; with ``grouping``, the grouped IoU (``table3``, the layout of the
    paper's Table 3), with ``unseen`` classes, seen / unseen / harmonic mIoU (``table4``)."""
    conf = confusion_matrix(pred, gt, len(class_names))
    return {**summarize(conf, class_names), **_grouped_and_zero_shot(conf, class_names, grouping, unseen),
            "n_images": int(len(gt))}


def _grouped_and_zero_shot(conf: np.ndarray, class_names: list[str], grouping: Grouping | None,
                           unseen: Sequence[str]) -> dict:
    """A confusion matrix in the layouts of Table 3 (``table3``, with ``grouping``) and Table 4
    (``table4``, with ``unseen`` classes), each only where asked for."""
    out = {}
    if grouping is not None:
        out["table3"] = grouped_summary(collapse_confusion(conf, class_names, grouping), grouping)
    if unseen:
        out["table4"] = zero_shot_summary(conf, class_names, unseen)
    return out


def grouping_for(profile: str, groups: dict[str, list[str]] | None) -> Grouping | None:
    """The Table 3 grouping: ``groups`` (``evaluate.groups``) where given, else the profile's own
    (:data:`PROFILE_GROUPINGS`; the profiles not there have none)."""
    if groups:
        return Grouping({g: tuple(members) for g, members in groups.items()})
    return PROFILE_GROUPINGS.get(profile)


def evaluate_splits(models: dict, splits: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str],
                    batch_size: int, grouping: Grouping | None = None, unseen: Sequence[str] = ()) -> tuple[dict, dict]:
    """Every model of ``models`` ({"synthetic": m, "real": m}) on every split ({name: (images, labels)}).

    Returns the headline (per split: each segmenter's mIoU and the ratio synthetic / upper bound)
    and the details (per split: each segmenter's full summary, per-class IoU included, and the
    Table 3 / Table 4 layouts where ``grouping`` / ``unseen`` ask for them).
    """
    headline, details = {}, {}
    for split, (images, labels) in splits.items():
        res = {ROLES[w]: evaluate_predictions(predict(m, images, batch_size), labels, class_names, grouping, unseen)
               for w, m in models.items()}
        syn, real = res["synthetic"]["mIoU"], res["upper_bound"]["mIoU"]
        ratio = round(syn / real, 4) if real > 0 else None
        headline[split] = {"synthetic_mIoU": syn, "upper_bound_mIoU": real, "ratio": ratio}
        details[split] = {**res, "ratio": ratio}
    return headline, details


def paper_tables(conf: np.ndarray, class_names: list[str], unseen: Sequence[str],
                 grouping: Grouping | None) -> dict:
    """One segmenter's val confusion matrix in the layouts of the paper's tables: per-class IoU and
    mIoU (Table 2, every profile); grouped IoU and its mean (Table 3, with ``grouping``: see
    :func:`grouping_for`); seen, unseen and harmonic mIoU (Table 4, a profile with unseen classes)."""
    return {"table2": summarize(conf, class_names), **_grouped_and_zero_shot(conf, class_names, grouping, unseen)}


def evaluate_profile(models: dict, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                     unseen: Sequence[str], batch_size: int, grouping: Grouping | None) -> tuple[dict, dict]:
    """Both segmenters on a real profile's val split: the headline (each segmenter's mIoU, the ratio
    synthetic / upper bound, and the Table 3 / Table 4 figures where the profile has them) and the
    details (each segmenter's tables)."""
    details = {}
    for w, m in models.items():
        conf = confusion_matrix(predict(m, images, batch_size), labels, len(class_names))
        details[ROLES[w]] = {**paper_tables(conf, class_names, unseen, grouping), "n_images": int(len(labels))}
    headline = {}
    for role, tables in details.items():
        headline[f"{role}_mIoU"] = tables["table2"]["mIoU"]
        if "table3" in tables:
            headline[f"{role}_human_vehicle_mIoU"] = tables["table3"]["mIoU"]
        if "table4" in tables:
            headline[f"{role}_harmonic_mIoU"] = tables["table4"]["harmonic"]
    syn, real = headline["synthetic_mIoU"], headline["upper_bound_mIoU"]
    headline["ratio"] = round(syn / real, 4) if real > 0 else None
    return {"val": headline}, {"val": details}
