"""From recorded attention to object masks, by ``generate.threshold.rule``: the one way there.

The generate stage, the CLI and the assess stage all come through ``masks_from_store``. A
``RecordedAttention`` is a finished store seen read-only, computing each derived quantity (the
maps at a set of resolutions, the transition matrix for a power ``beta``) once: the assess stage's
mask-quality table applies every rule to one recording, and the (B, N, N) transition matrices are
the costly part.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..masks.baselines import dataset_diffusion_masks, diffumask_masks
from ..masks.refine import affinity_masks, threshold_grid, transition_matrix
from ..masks.result import ObjectMasks
from ..masks.threshold import normalize01, threshold
from ..params import Generate
from .attention import AttentionStore

# the rules that refine the cross-attention with the generator's self-attention (at generate.refine.resolution)
SELF_ATTENTION_RULES = ("affinity", "dataset_diffusion")


def map_resolutions(cfg: Generate) -> list[int]:
    """The cross-attention resolutions the threshold rule reads: ``generate.resolutions``, or for the
    diffumask rule every resolution of its per-class subsets."""
    if cfg.threshold.rule == "diffumask":
        return sorted({r for rs in cfg.diffumask.resolutions.values() for r in rs})
    return sorted(set(cfg.resolutions))


def new_store(token_index: torch.Tensor, cfg: Generate) -> AttentionStore:
    """An attention store for the threshold rule: cross-attention at the resolutions it reads only
    (``map_resolutions``), and self-attention when the rule needs affinities."""
    res = cfg.refine.resolution if cfg.threshold.rule in SELF_ATTENTION_RULES else None
    return AttentionStore(token_index, self_attention_resolution=res, resolutions=map_resolutions(cfg))


class RecordedAttention:
    """The first recorded token's attention of a finished store, at ``size`` x ``size``."""

    def __init__(self, store: AttentionStore, size: int):
        self.store, self.size = store, size
        self.n = store.token_index.shape[0]
        self._maps: dict[tuple[int, ...], np.ndarray] = {}
        self._transitions: dict[float, torch.Tensor] = {}

    @property
    def resolutions(self) -> list[int]:
        """Resolutions with recorded cross-attention."""
        return sorted(self.store.layers_by_resolution())

    @property
    def unet_resolutions(self) -> list[int]:
        """Resolutions of the generator's attention layers: the recorded ones and the ones the store skipped."""
        return sorted(set(self.resolutions) | self.store.skipped_resolutions)

    def raw_maps(self, resolutions: Sequence[int], key: str) -> np.ndarray:
        """(B, size, size) float32: the mean over the layers at ``resolutions`` (``store.maps``).
        ``key``: the dotted params key the resolutions come from, named when there are none."""
        k = tuple(sorted(set(resolutions)))
        if k not in self._maps:
            missing = sorted(set(k) - set(self.resolutions))
            if missing:
                raise ValueError(f"{key}: no cross-attention recorded at {missing} "
                                 f"(the generator's attention layers are at {self.unet_resolutions})")
            self._maps[k] = self.store.maps(self.size, list(k))[:, 0].numpy().astype(np.float32)
        return self._maps[k]

    def maps(self, resolutions: Sequence[int], key: str) -> np.ndarray:
        """``raw_maps`` min-max normalised per map."""
        return normalize01(self.raw_maps(resolutions, key)).astype(np.float32)

    def transition(self, beta: float, cfg: Generate) -> torch.Tensor:
        """``transition_matrix`` of the recorded self-attention for the power ``beta``."""
        if beta not in self._transitions:
            try:
                affinity = self.store.affinity()
            except ValueError:
                raise ValueError(f"generate.refine.resolution={cfg.refine.resolution}: the generator has no "
                                 f"self-attention at that resolution (its attention layers are at "
                                 f"{self.unet_resolutions})") from None
            self._transitions[beta] = transition_matrix(affinity, beta)
        return self._transitions[beta]


def masks_from_recorded(rec: RecordedAttention, cfg: Generate, classes: Sequence[str]) -> ObjectMasks:
    """Masks of the B prompts by ``cfg.threshold.rule``; ``classes``: the prompts' object classes
    (the diffumask rule's thresholds and resolutions are per class)."""
    rule = cfg.threshold.rule
    if len(classes) != rec.n:
        raise ValueError(f"{len(classes)} classes for a store of {rec.n} prompts")
    if rule == "diffumask":
        d = cfg.diffumask
        wanted = sorted({r for c in classes if c in d.resolutions for r in d.resolutions[c]})
        by_res = {r: rec.raw_maps([r], "generate.diffumask.resolutions") for r in wanted}
        return diffumask_masks(by_res, classes, d.thresholds, d.resolutions)
    maps = rec.maps(cfg.resolutions, "generate.resolutions")
    if rule == "affinity":
        r = cfg.refine
        _, _, masks = affinity_masks(maps, rec.transition(r.beta, cfg), r.walk_steps, r.bg_power,
                                     threshold_grid(r.grid_step))
        return ObjectMasks.binary(maps, masks)
    if rule == "dataset_diffusion":
        d = cfg.dataset_diffusion
        return dataset_diffusion_masks(maps, rec.transition(1.0, cfg), d.tau, d.low, d.high)
    return ObjectMasks.binary(maps, np.stack([threshold(m, rule, cfg.threshold.value) for m in maps]))


def masks_from_store(store: AttentionStore, size: int, cfg: Generate, classes: Sequence[str]) -> ObjectMasks:
    """Masks of the first recorded token of each of the B prompts, at ``size`` x ``size``, by
    ``cfg.threshold.rule``."""
    return masks_from_recorded(RecordedAttention(store, size), cfg, classes)
