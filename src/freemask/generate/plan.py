"""The generate stage's plan: every prompt, its background and its own seed, fixed by params alone.

``per_class`` single-object prompts per class, each on a background drawn from where the class is
prompted (the label set's P(background | class)), with the class word or a sub-class phrase its
seed picks; ``scenes_per_background`` empty scenes per background. The plan is cut in order into
shards; a sample's seed does not depend on its batch, its shard or the plan's length.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..labels import LabelSet
from ..params import Generate


@dataclass(frozen=True)
class PlannedSample:
    key: str
    prompt: str
    cls: str | None  # None for an empty scene
    background: str
    seed: int


def sample_seed(*parts: int) -> int:
    return int(np.random.default_rng(list(parts)).integers(0, 2**31 - 1))


def plan_objects(cfg: Generate, labels: LabelSet) -> list[PlannedSample]:
    """``per_class`` prompts per class, each on a background drawn from where the class occurs."""
    out = []
    for k, cls in enumerate(labels.classes):
        w = labels.background_weights[cls]
        for i in range(cfg.per_class):
            rng = np.random.default_rng([cfg.seed, 1, k, i])
            bg = labels.backgrounds[int(rng.choice(len(labels.backgrounds), p=w))]
            seed = sample_seed(cfg.seed, 2, k, i)
            out.append(PlannedSample(f"{cls.replace(' ', '_')}_{i:05d}", labels.prompt(labels.phrase(cls, seed), bg),
                                     cls, bg, seed))
    return out


def plan_scenes(cfg: Generate, labels: LabelSet) -> list[PlannedSample]:
    return [PlannedSample(f"{bg.replace(' ', '_')}_{j:05d}", labels.scene_prompt(bg), None, bg,
                          sample_seed(cfg.seed, 3, b, j))
            for b, bg in enumerate(labels.backgrounds) for j in range(cfg.scenes_per_background)]


def plan_shards(plan: list[PlannedSample], shard_size: int) -> list[list[PlannedSample]]:
    """The plan cut in order into shards of ``shard_size`` samples (the last may be shorter)."""
    return [plan[i:i + shard_size] for i in range(0, len(plan), shard_size)]
