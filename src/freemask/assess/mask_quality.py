"""The mask-quality table: every threshold rule at every resolution subset, scored on one recording.

A row is a ``MaskSetting`` (a rule and the cross-attention resolutions it uses); its masks come
from ``masking.masks_from_recorded`` with the generate params changed only in the rule and the
resolutions, so a row is exactly what the generate stage would write under those params. Every
row reads the same ``RecordedAttention``: the images are generated (or the renders noised) once.
IoU is taken over the pixels a rule does not ignore; the ignored share is reported beside it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..masks.affinity_net import AffinityNet, dense_affinity
from ..metrics.segmentation import mask_iou, per_class_mean
from ..params import Generate
from ..world.spec import CLASSES
from ..masks.rules import RecordedAttention, masks_from_recorded

RULES = ("fixed", "otsu", "affinity", "diffumask", "dataset_diffusion")
# where the refinement's affinities come from: the generator's self-attention, or a learned affinity
# network (``freemask.masks.affinity_net``, trained by the train_affinity stage)
AFFINITY_SOURCES = ("self_attention", "learned")


@dataclass(frozen=True)
class MaskSetting:
    """A rule and its cross-attention resolutions; ``resolutions=None`` (diffumask only): the per-class
    resolutions of generate.diffumask.resolutions."""

    rule: str
    resolutions: tuple[int, ...] | None
    affinity: str = "self_attention"  # one of AFFINITY_SOURCES; "learned" for the affinity rule only

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r} (rules: {', '.join(RULES)})")
        if self.affinity not in AFFINITY_SOURCES:
            raise ValueError(f"unknown affinity source {self.affinity!r} (sources: {', '.join(AFFINITY_SOURCES)})")
        if self.affinity == "learned" and self.rule != "affinity":
            raise ValueError(f"learned affinities refine the affinity rule, not {self.rule!r}")
        if self.resolutions is None and self.rule != "diffumask":
            raise ValueError(f"rule {self.rule!r} has no per-class resolutions; give a resolution subset")

    def config(self, gcfg: Generate) -> Generate:
        """``gcfg`` with this rule and these resolutions (diffumask: every class on the subset)."""
        update = {"threshold": gcfg.threshold.model_copy(update={"rule": self.rule})}
        if self.resolutions is not None:
            if self.rule == "diffumask":
                per_class = {c: list(self.resolutions) for c in gcfg.diffumask.resolutions}
                update["diffumask"] = gcfg.diffumask.model_copy(update={"resolutions": per_class})
            else:
                update["resolutions"] = list(self.resolutions)
        return gcfg.model_copy(update=update)

    def rule_label(self, gcfg: Generate) -> str:
        """The rule with the params that make it, e.g. ``fixed 0.5``, ``dataset_diffusion tau=4 [0.5, 0.6)``."""
        if self.rule == "fixed":
            return f"fixed {gcfg.threshold.value:g}"
        if self.rule == "affinity":
            r = gcfg.refine
            source = ", learned affinities" if self.affinity == "learned" else ""
            return f"affinity (beta {r.beta:g}, walk steps {r.walk_steps}, bg_power {r.bg_power:g}{source})"
        if self.rule == "diffumask":
            return "diffumask (per-class thresholds)"
        if self.rule == "dataset_diffusion":
            d = gcfg.dataset_diffusion
            return f"dataset_diffusion (tau {d.tau}, ignore [{d.low:g}, {d.high:g}))"
        return self.rule

    def resolutions_label(self) -> str:
        return "per class" if self.resolutions is None else "+".join(map(str, self.resolutions))


def mask_settings(subsets: Sequence[Sequence[int]], learned: bool = False) -> list[MaskSetting]:
    """Every rule at every resolution subset, and diffumask on its own per-class resolutions too;
    ``learned``: the affinity rule with learned affinities at every subset as well."""
    out = []
    for rule in RULES:
        out += [MaskSetting(rule, tuple(s)) for s in subsets]
        if rule == "affinity" and learned:
            out += [MaskSetting(rule, tuple(s), "learned") for s in subsets]
        if rule == "diffumask":
            out.append(MaskSetting(rule, None))
    return out


class RuleScores:
    """Per-sample IoU (over non-ignored pixels) against a reference mask and ignored share, for every
    setting, gathered batch by batch."""

    def __init__(self, settings: Sequence[MaskSetting], gcfg: Generate, affinity_net: AffinityNet | None = None):
        self.settings, self.gcfg, self.affinity_net = list(settings), gcfg, affinity_net
        if affinity_net is None and any(s.affinity == "learned" for s in self.settings):
            raise ValueError("settings with learned affinities need the affinity net (models/affinity_net)")
        self.configs = [s.config(gcfg) for s in self.settings]
        self.iou: list[list[np.ndarray]] = [[] for _ in self.settings]
        self.ignored: list[list[np.ndarray]] = [[] for _ in self.settings]
        self.classes: list[str] = []

    def add(self, rec: RecordedAttention, classes: Sequence[str], reference: np.ndarray,
            images: np.ndarray | None = None) -> None:
        """Score every setting's masks of one recording against ``reference`` (B, H, W) bool;
        ``images`` (B, H, W, 3) uint8, the recorded images, for the learned affinities."""
        if reference.shape != (rec.n, rec.size, rec.size):
            raise ValueError(f"reference masks {reference.shape} do not fit {rec.n} maps of {rec.size}x{rec.size}")
        learned = None
        if self.affinity_net is not None and any(s.affinity == "learned" for s in self.settings):
            if images is None or len(images) != rec.n:
                raise ValueError(f"learned affinities need the {rec.n} recorded images")
            learned = rec.with_affinity(dense_affinity(self.affinity_net, images, self.gcfg.refine.resolution))
        for k, (setting, cfg) in enumerate(zip(self.settings, self.configs)):
            m = masks_from_recorded(learned if setting.affinity == "learned" else rec, cfg, classes)
            self.iou[k].append(np.array([mask_iou(f, r, i) for f, r, i in zip(m.foreground, reference, m.ignore)]))
            self.ignored[k].append(m.ignore.mean(axis=(1, 2)))
        self.classes += list(classes)

    def summary(self) -> list[dict]:
        """One dict per setting: ``iou`` and ``ignored_share``, each ``{"mean", "per_class"}``."""
        if not self.classes:
            raise ValueError("no samples were scored")
        return [{"iou": per_class_mean(np.concatenate(iou), self.classes, CLASSES),
                 "ignored_share": per_class_mean(np.concatenate(ign), self.classes, CLASSES)}
                for iou, ign in zip(self.iou, self.ignored)]


def mask_quality_table(on_generated: RuleScores, on_renders: RuleScores) -> dict:
    """The ``mask_quality`` entry of metrics/generator_quality.json: one row per setting with its
    scores against the oracle on generated samples and against the truth on noised renders."""
    if on_generated.settings != on_renders.settings:
        raise ValueError("the two score sets were made with different settings")
    gcfg = on_generated.gcfg
    rows = []
    for s, gen, ren in zip(on_generated.settings, on_generated.summary(), on_renders.summary()):
        rows.append({"rule": s.rule, "affinities": s.affinity, "setting": s.rule_label(gcfg),
                     "resolutions": s.resolutions_label(),
                     "vs_oracle_on_generated": gen, "vs_truth_on_noised_renders": ren})
    return {"n_generated": len(on_generated.classes), "n_noised_renders": len(on_renders.classes), "rows": rows}
