"""From recorded attention to object masks, by ``generate.threshold.rule``: the one way there, for
every generator.

The generate stage, the CLI, the assess stage and active learning all come through
``masks_from_store``. A
``RecordedAttention`` is a finished store seen read-only, computing each derived quantity (the
maps at a set of resolutions, the transition matrix for a power ``beta``) once: the assess stage's
mask-quality table applies every rule to one recording, and the (B, N, N) transition matrices are
the costly part.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..attention.recorder import AttentionStore, layer_resolutions
from ..attention.tokens import WordTokens, word_maps
from ..params import Generate, ParamsError
from .baselines import dataset_diffusion_masks, diffumask_masks
from .refine import affinity_masks, threshold_grid, transition_matrix
from .result import ObjectMasks
from .threshold import normalize01, threshold

# the rules that refine the cross-attention with the generator's self-attention (at generate.refine.resolution)
SELF_ATTENTION_RULES = ("affinity", "dataset_diffusion")
# the most bytes of float64 transition matrices held at once when they are not kept
TRANSITION_CHUNK_BYTES = 64 * 2**20


def map_resolutions(cfg: Generate) -> list[int]:
    """The cross-attention resolutions the threshold rule reads: ``generate.resolutions``, or for the
    diffumask rule every resolution of its per-class subsets."""
    if cfg.threshold.rule == "diffumask":
        return sorted({r for rs in cfg.diffumask.resolutions.values() for r in rs})
    return sorted(set(cfg.resolutions))


def check_resolutions(resolutions: Sequence[int], unet, key: str, side: int | None = None) -> None:
    """``resolutions`` (of the params ``key``) are ones the generator has cross-attention at (for
    ``side`` x ``side`` latents; None: its configured size), or a ParamsError naming the key."""
    cross = sorted({r for name, r in layer_resolutions(unet, side).items() if ".attn2." in name})
    missing = sorted(set(resolutions) - set(cross))
    if missing:
        raise ParamsError(f"{key}: no cross-attention at {missing} in this generator (its attention layers are "
                          f"at {cross})")


def check_fits(cfg: Generate, unet, every_rule: bool = False, side: int | None = None) -> None:
    """The resolutions the threshold rule reads (``every_rule``: any rule) are ones the generator has
    attention layers at, or a ParamsError naming the key: the check a recording makes
    (``RecordedAttention.raw_maps``), made from the UNet's layout before a stage samples anything or
    touches its outputs."""
    rule = cfg.threshold.rule
    if every_rule or rule != "diffumask":
        check_resolutions(cfg.resolutions, unet, "generate.resolutions", side)
    if every_rule or rule == "diffumask":
        check_resolutions(sorted({r for rs in cfg.diffumask.resolutions.values() for r in rs}), unet,
                          "generate.diffumask.resolutions", side)
    own = sorted({r for name, r in layer_resolutions(unet, side).items() if ".attn1." in name})
    if (every_rule or rule in SELF_ATTENTION_RULES) and cfg.refine.resolution not in own:
        raise ParamsError(f"generate.refine.resolution={cfg.refine.resolution}: the generator has no self-attention "
                          f"at that resolution (its attention layers are at {own})")


def new_store(tokens: WordTokens, cfg: Generate, every_rule: bool = False) -> AttentionStore:
    """An attention store for the threshold rule: cross-attention at the resolutions it reads only
    (``map_resolutions``), and self-attention when the rule needs affinities (``every_rule``: what
    every rule reads, at the generate resolutions and the refine resolution)."""
    if every_rule:
        return AttentionStore(tokens.index, self_attention_resolution=cfg.refine.resolution)
    res = cfg.refine.resolution if cfg.threshold.rule in SELF_ATTENTION_RULES else None
    return AttentionStore(tokens.index, self_attention_resolution=res, resolutions=map_resolutions(cfg))


class RecordedAttention:
    """The attention of the first recorded word of each prompt in a finished store (all of the
    word's tokens averaged, ``tokens``), at ``size`` x ``size``."""

    def __init__(self, store: AttentionStore, size: int, tokens: WordTokens, keep_transitions: bool = True,
                 affinity: torch.Tensor | None = None):
        self.store, self.size, self.tokens = store, size, tokens
        self.n = store.token_index.shape[0]
        self._maps: dict[tuple[int, ...], np.ndarray] = {}
        # keep_transitions: each power's transition matrices are computed once for the whole batch and
        # kept (several rules read one recording); otherwise made and dropped a few images at a time
        self.keep_transitions = keep_transitions
        self._transitions: dict[float, torch.Tensor] = {}
        # (B, N, N) affinities that replace the recorded self-attention (a learned affinity network's)
        if affinity is not None and (affinity.ndim != 3 or affinity.shape[0] != self.n):
            raise ValueError(f"affinities {tuple(affinity.shape)} do not fit a recording of {self.n} images")
        self.affinity = affinity

    def with_affinity(self, affinity: torch.Tensor) -> "RecordedAttention":
        """The same recording (the same maps, computed once) with ``affinity`` (B, N, N) in place of the
        self-attention: the refinement rules walk on it."""
        other = RecordedAttention(self.store, self.size, self.tokens, self.keep_transitions, affinity)
        other._maps = self._maps
        return other

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
                raise ParamsError(f"{key}: no cross-attention recorded at {missing} "
                                  f"(the generator's attention layers are at {self.unet_resolutions})")
            self._maps[k] = word_maps(self.store, self.tokens, self.size, list(k))[:, 0].cpu().numpy().astype(np.float32)
        return self._maps[k]

    def maps(self, resolutions: Sequence[int], key: str) -> np.ndarray:
        """``raw_maps`` min-max normalised per map."""
        return normalize01(self.raw_maps(resolutions, key)).astype(np.float32)

    def _affinity(self, cfg: Generate, rows: slice | None = None) -> torch.Tensor:
        if self.affinity is not None:
            return self.affinity[rows if rows is not None else slice(None)]
        try:
            return self.store.affinity(rows)
        except ValueError:
            raise ParamsError(f"generate.refine.resolution={cfg.refine.resolution}: the generator has no "
                              f"self-attention at that resolution (its attention layers are at "
                              f"{self.unet_resolutions})") from None

    def transition(self, beta: float, cfg: Generate) -> torch.Tensor:
        """``transition_matrix`` of the recorded self-attention for the power ``beta``, every image."""
        if beta in self._transitions:
            return self._transitions[beta]
        t = transition_matrix(self._affinity(cfg).cpu(), beta)
        if self.keep_transitions:
            self._transitions[beta] = t
        return t

    def transitions(self, beta: float, cfg: Generate) -> Iterator[tuple[slice, torch.Tensor]]:
        """(images, their transition matrices) over the batch: one piece if ``keep_transitions``, else
        pieces of at most ``TRANSITION_CHUNK_BYTES`` (a float64 (N, N) matrix at 32x32 is 8 MiB an image)."""
        if self.keep_transitions:
            yield slice(0, self.n), self.transition(beta, cfg)
            return
        per = max(1, TRANSITION_CHUNK_BYTES // (8 * self._affinity(cfg, slice(0, 1))[0].numel()))
        for start in range(0, self.n, per):
            rows = slice(start, min(start + per, self.n))
            yield rows, transition_matrix(self._affinity(cfg, rows).cpu(), beta)


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
        grid = threshold_grid(r.grid_step)
        masks = [affinity_masks(maps[rows], t, r.walk_steps, r.bg_power, grid)[2]
                 for rows, t in rec.transitions(r.beta, cfg)]
        return ObjectMasks.binary(maps, np.concatenate(masks))
    if rule == "dataset_diffusion":
        d = cfg.dataset_diffusion
        return ObjectMasks.concatenate([dataset_diffusion_masks(maps[rows], t, d.tau, d.low, d.high)
                                        for rows, t in rec.transitions(1.0, cfg)])
    return ObjectMasks.binary(maps, np.stack([threshold(m, rule, cfg.threshold.value) for m in maps]))


def masks_from_store(store: AttentionStore, tokens: WordTokens, size: int, cfg: Generate,
                     classes: Sequence[str]) -> ObjectMasks:
    """Masks of the first recorded word of each of the B prompts, at ``size`` x ``size``, by
    ``cfg.threshold.rule`` (the transition matrices made a few images at a time: memory stays flat
    in the batch size)."""
    return masks_from_recorded(RecordedAttention(store, size, tokens, keep_transitions=False), cfg, classes)
