"""Grouped IoU: classes merged into a few groups before scoring (the paper's Table 3).

Table 3 scores Cityscapes val on two groups, **Human** = person + rider and **Vehicle** = car +
bus + truck + train (§4.2: "we focus on evaluating two significant classes, namely 'Human' and
'Vehicle', encompassing six sub-classes"), and its mIoU column is the mean of those two: 6 of its
8 rows check to the rounding, e.g. (83.4 + 94.5) / 2 = 89.0.

Every other scored class (road, building, ..., motorcycle, bicycle) becomes **background**, not
ignore: the synthetic training sets hold only the six sub-classes with everything else labelled
background, so the segmenter's label space is {background, human, vehicle}, and a street scene's
road and buildings are exactly where its false positives fall; ignoring them would let a
"human" painted over the road cost nothing. Pixels the 19-class protocol ignores (train id 255:
void, caravan, trailer, ...) stay ignored. Background gets an IoU of its own in the output but
is not in the mIoU, as in the table.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .segmentation import IGNORE_INDEX, iou_per_class


@dataclass(frozen=True)
class Grouping:
    """``groups``: group name -> member class names; group ids are 1, 2, ... in that order and
    0 is ``rest``, every class not named in a group."""

    groups: dict[str, tuple[str, ...]]
    rest: str = "background"

    def __post_init__(self):
        if not self.groups:
            raise ValueError("a grouping needs at least one group")
        seen: dict[str, str] = {}
        for g, members in self.groups.items():
            if g == self.rest:
                raise ValueError(f"group name {g!r} is the name of the rest group")
            if not members:
                raise ValueError(f"group {g!r} has no member classes")
            for m in members:
                if m in seen:
                    raise ValueError(f"class {m!r} is in both group {seen[m]!r} and group {g!r}")
                seen[m] = g

    @property
    def names(self) -> tuple[str, ...]:
        return (self.rest, *self.groups)

    def lut(self, class_names: Sequence[str], ignore_index: int = IGNORE_INDEX) -> np.ndarray:
        """256 entries: class id -> group id, ``ignore_index`` -> itself, anything else -> -1."""
        if len(class_names) > ignore_index:
            raise ValueError(f"{len(class_names)} classes overlap the ignore index {ignore_index}")
        index = {n: i for i, n in enumerate(class_names)}
        lut = np.full(256, -1, np.int16)
        lut[: len(class_names)] = 0
        for gid, (g, members) in enumerate(self.groups.items(), 1):
            for m in members:
                if m not in index:
                    raise KeyError(f"group {g!r}: class {m!r} is not among the classes ({', '.join(class_names)})")
                lut[index[m]] = gid
        lut[ignore_index] = ignore_index
        return lut


HUMAN_VEHICLE = Grouping({"human": ("person", "rider"), "vehicle": ("car", "bus", "truck", "train")})


def to_groups(labels: np.ndarray, class_names: Sequence[str], grouping: Grouping,
              ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A label map (ground truth or a K-class prediction) in group ids; ignore stays ignore."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    lut = grouping.lut(class_names, ignore_index)
    in_range = (labels >= 0) & (labels <= 255)
    out = np.where(in_range, lut[np.clip(labels, 0, 255)], -1)
    bad = out < 0
    if bad.any():
        vals = np.unique(labels[bad]).tolist()
        raise ValueError(f"label {vals[0]} is neither a class id 0..{len(class_names) - 1} nor {ignore_index} "
                         f"(all bad values: {vals})")
    return out.astype(np.uint8)


def collapse_confusion(conf: np.ndarray, class_names: Sequence[str], grouping: Grouping) -> np.ndarray:
    """A K x K confusion matrix (gt rows, predicted columns) summed into groups: G x G."""
    conf = np.asarray(conf)
    if conf.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {conf.shape} does not match {len(class_names)} class names")
    gid = grouping.lut(class_names)[: len(class_names)].astype(np.int64)
    g = len(grouping.names)
    onehot = np.zeros((len(class_names), g), np.int64)
    onehot[np.arange(len(class_names)), gid] = 1
    return onehot.T @ conf.astype(np.int64) @ onehot


def grouped_summary(conf: np.ndarray, grouping: Grouping) -> dict:
    """``{"mIoU", "per_group": {group: iou or None}, rest: iou or None}`` from a G x G matrix.

    mIoU is the mean over the named groups present in gt or prediction; the rest group is
    reported but not averaged in.
    """
    conf = np.asarray(conf)
    if conf.shape != (len(grouping.names),) * 2:
        raise ValueError(f"confusion matrix {conf.shape} does not match the groups {grouping.names}")
    ious = iou_per_class(conf)
    groups = ious[1:]
    return {
        "mIoU": float(np.nanmean(groups)) if np.isfinite(groups).any() else float("nan"),
        "per_group": {g: (None if np.isnan(v) else float(v)) for g, v in zip(grouping.groups, groups)},
        grouping.rest: None if np.isnan(ious[0]) else float(ious[0]),
    }
