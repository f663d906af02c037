"""Attention capture as a pluggable diffusers attention processor.

``AttentionRecorder`` replaces the processor of every cross-attention layer (``attn2``) of
a ``UNet2DConditionModel``; it computes the attention probabilities explicitly, adds the
columns of the requested tokens to a running sum kept on the device (so memory does not grow
with the number of denoising steps), and returns what the standard processor returns (up to float rounding).
Under classifier-free guidance only the conditional half of the batch is recorded.

Cross-attention is recorded at every resolution, or at the ones asked for (``resolutions``: the
layers elsewhere run their own processor and cost nothing extra). When asked
(``self_attention_resolution``), the self-attention layers (``attn1``) at that
resolution (see ``layer_resolutions``) are recorded too, as one running (B, HW, HW) sum: the pixel affinities that
``freemask.masks.refine`` uses to refine the maps.

Which token columns to record, and how a word of several tokens becomes one map:
``freemask.attention.tokens``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..memory import release_free_memory

# the most bytes of explicit self-attention probabilities held at once (per chunk of prompts)
SELF_ATTENTION_CHUNK_BYTES = 32 * 2**20


class ScratchBuffers:
    """Buffers reused by every chunk of every self-attention layer of a recording: the chunk's scores
    and probabilities. Allocated fresh instead, each chunk-sized tensor would be a fresh mmap from
    glibc, paid again in page faults at every chunk (figures in
    docs/decisions.md#capture-memory-and-speed)."""

    def __init__(self):
        self._flat: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised tensor of ``shape``, a view of buffer ``name`` (grown when too small)."""
        n = math.prod(shape)
        buf = self._flat.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            self._flat.pop(name, None)  # freed before the larger one is allocated
            buf = self._flat[name] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(*shape)

    def clear(self) -> None:
        self._flat.clear()


def attention_probs_into(attn, query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None,
                         scratch: ScratchBuffers) -> torch.Tensor:
    """``attn.get_attention_scores(query, key, attention_mask)``, the same kernels and bits, with the
    scores and the probabilities written into ``scratch`` (valid until its next ``take``)."""
    dtype = query.dtype
    if attn.upcast_attention:
        query, key = query.float(), key.float()
    shape = (query.shape[0], query.shape[1], key.shape[1])
    scores = scratch.take("scores", shape, query.dtype, query.device)
    if attention_mask is None:  # beta 0: the buffer's old contents are ignored, NaNs included
        scores.baddbmm_(query, key.transpose(-1, -2), beta=0, alpha=attn.scale)
    else:
        torch.baddbmm(attention_mask, query, key.transpose(-1, -2), beta=1, alpha=attn.scale, out=scores)
    if attn.upcast_softmax:
        scores = scores.float()
    probs = torch.softmax(scores, dim=-1, out=scratch.take("probs", shape, scores.dtype, scores.device))
    return probs.to(dtype)


def map_side(hw: int, height: int | None = None) -> int:
    """The side of a layer's square attention grid: the feature map's ``height`` when the layer saw a
    4-D feature map, else the square root of its ``hw`` tokens."""
    return height if height is not None else int(round(math.sqrt(hw)))


class AttentionStore:
    """Running sums of cross-attention probabilities for selected tokens, per layer.

    ``token_index``: (B, K) long tensor, the K token positions to record for each of the B
    prompts. ``batch_slice``: which rows of the UNet batch are the conditional branch
    (``slice(B, 2B)`` when the batch is [unconditional, conditional]).
    """

    def __init__(self, token_index: torch.Tensor, batch_slice: slice | None = None,
                 self_attention_resolution: int | None = None, resolutions: Sequence[int] | None = None):
        if token_index.ndim != 2:
            raise ValueError(f"token_index must be (batch, tokens), got shape {tuple(token_index.shape)}")
        self.token_index = token_index.long()
        # cross-attention is recorded at these resolutions only (every one if None); the layers at
        # the others run their own processor
        self.resolutions = None if resolutions is None else frozenset(int(r) for r in resolutions)
        self.skipped_resolutions: set[int] = set()
        self.batch_slice = batch_slice
        self.active = True
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.resolution: dict[str, int] = {}
        self.self_attention_resolution = self_attention_resolution
        self.self_sum: torch.Tensor | None = None
        self.self_count = 0
        self.self_active = True  # the sampler narrows self-attention to some of the recorded steps

    def _conditional(self, probs: torch.Tensor, heads: int, selected: bool = False) -> torch.Tensor:
        bh, hw, seq = probs.shape
        p = probs.view(bh // heads, heads, hw, seq).mean(1)
        return p[self.batch_slice] if self.batch_slice is not None and not selected else p

    def add_self(self, layer: str, probs: torch.Tensor, heads: int, height: int | None = None,
                 selected: bool = False, rows: slice | None = None, last: bool = True) -> None:
        """``probs``: (batch * heads, HW, HW) self-attention of one layer call, of the whole UNet batch
        or (``selected``) of the ``batch_slice`` rows only; kept if at the asked resolution and
        ``self_active``. A layer call may hand its kept rows in chunks: ``rows`` names the store rows
        (prompts) of this chunk, and only the call's ``last`` chunk counts as a recorded call."""
        hw = probs.shape[1]
        if not (self.active and self.self_active) or map_side(hw, height) != self.self_attention_resolution:
            return
        p = self._conditional(probs, heads, selected or rows is not None).detach()
        if self.self_sum is None:  # zeros + p is p bit for bit: probabilities are finite and >= 0
            self.self_sum = torch.zeros((self.token_index.shape[0], hw, hw), dtype=p.dtype, device=p.device)
        kept = self.self_sum[rows if rows is not None else slice(None)]
        if kept.shape != p.shape:
            raise ValueError(f"layer {layer}: self-attention of {p.shape[0]} prompts for store rows "
                             f"{rows} of {self.self_sum.shape[0]}")
        kept += p
        if last:
            self.self_count += 1

    def affinity(self, rows: slice | None = None) -> torch.Tensor:
        """(B, HW, HW): self-attention at ``self_attention_resolution``, mean over layers and steps, of
        every prompt or of the prompts ``rows``."""
        if self.self_sum is None:
            raise ValueError(f"no self-attention recorded at resolution {self.self_attention_resolution}")
        return self.self_sum[rows if rows is not None else slice(None)] / self.self_count

    def records_cross(self, resolution: int) -> bool:
        """Whether cross-attention at ``resolution`` is recorded (noting the resolutions skipped)."""
        if self.resolutions is None or resolution in self.resolutions:
            return True
        self.skipped_resolutions.add(resolution)
        return False

    def add(self, layer: str, probs: torch.Tensor, heads: int, height: int | None = None,
            selected: bool = False) -> None:
        """``probs``: (batch * heads, HW, seq) attention probabilities of one layer call, of the whole
        UNet batch or (``selected``) of the ``batch_slice`` rows only; kept if at a recorded resolution."""
        hw = probs.shape[1]
        side = map_side(hw, height)
        if not self.active or not self.records_cross(side):
            return
        p = self._conditional(probs, heads, selected)
        idx = self.token_index.to(p.device)
        if idx.shape[0] != p.shape[0]:
            raise ValueError(f"attention store expects {idx.shape[0]} prompts, layer {layer} sees {p.shape[0]}")
        # summed in float32: under fp16 a sum over tens of steps would lose the small probabilities
        sel = torch.gather(p, 2, idx[:, None, :].expand(-1, hw, -1)).detach().float()  # (B, HW, K)
        if layer in self.sums:
            self.sums[layer] += sel
            self.counts[layer] += 1
        else:
            self.sums[layer] = sel.clone()
            self.counts[layer] = 1
            self.resolution[layer] = side

    def layers_by_resolution(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for name, r in self.resolution.items():
            out.setdefault(r, []).append(name)
        return out

    def maps(self, size: int, resolutions: Sequence[int] | None = None) -> torch.Tensor:
        """(B, K, size, size): per layer the mean over recorded steps, upsampled, averaged over layers."""
        if not self.resolution:
            raise ValueError("no cross-attention was recorded: no UNet forward pass ran inside `recording` "
                             "with the store active")
        names = [n for n, r in self.resolution.items() if resolutions is None or r in resolutions]
        if not names:
            have = sorted(set(self.resolution.values()))
            raise ValueError(f"no cross-attention recorded at resolutions {list(resolutions or [])}; recorded: {have}")
        acc = None
        for n in names:
            r = self.resolution[n]
            m = self.sums[n] / self.counts[n]  # (B, HW, K)
            B, hw, K = m.shape
            m = m.permute(0, 2, 1).reshape(B, K, r, hw // r)
            m = F.interpolate(m.float(), size=(size, size), mode="bilinear", align_corners=False)
            acc = m if acc is None else acc + m
        return acc / len(names)


class AttentionRecorder:
    """Attention processor that records a layer's attention probabilities into an ``AttentionStore``:
    token columns for cross-attention, the full map for self-attention (``self_attention=True``).

    While the store is inactive (sampling steps outside the recorded timesteps) the layer's own
    processor ``fallback`` runs instead, when given: the explicit probabilities are only computed
    where they are kept."""

    def __init__(self, store: AttentionStore, layer: str, self_attention: bool = False, fallback=None,
                 scratch: ScratchBuffers | None = None):
        self.store, self.layer, self.self_attention, self.fallback = store, layer, self_attention, fallback
        # the self-attention layers of one recording share one (``recording`` hands it out and frees it)
        self.scratch = scratch if scratch is not None else ScratchBuffers()

    def _recording_now(self, hidden_states: torch.Tensor) -> bool:
        if not self.store.active:
            return False
        if self.self_attention:
            return self.store.self_active
        four_d = hidden_states.ndim == 4  # (B, C, H, W) or (B, HW, C), as _explicit reads it
        hw = hidden_states.shape[2] * hidden_states.shape[3] if four_d else hidden_states.shape[1]
        return self.store.records_cross(map_side(hw, hidden_states.shape[2] if four_d else None))

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        if not self._recording_now(hidden_states) and self.fallback is not None:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        n = hidden_states.shape[0]
        kept = self.store.batch_slice
        start, stop, step = kept.indices(n) if kept is not None else (0, n, 1)
        if ((start, stop) == (0, n) or step != 1 or self.fallback is None or attention_mask is not None
                or temb is not None):
            return self._explicit(attn, hidden_states, encoder_hidden_states, attention_mask, temb, selected=False)
        # only the kept rows (the conditional branch under guidance) need explicit probabilities; the
        # rows before and after them (views, not copies) run through the layer's own processor
        ctx = (lambda r: None) if encoder_hidden_states is None else (lambda r: encoder_hidden_states[r])
        parts = []
        for rows, explicit in ((slice(0, start), False), (slice(start, stop), True), (slice(stop, n), False)):
            if rows.stop > rows.start:
                parts.append(self._explicit(attn, hidden_states[rows], ctx(rows), None, None, selected=True) if explicit
                             else self.fallback(attn, hidden_states[rows], ctx(rows), None, None, *args, **kwargs))
        return torch.cat([p.to(hidden_states.dtype) for p in parts]) if len(parts) > 1 else parts[0]

    def _self_attention_in_chunks(self, attn, query, key, value, attention_mask, height,
                                  kept: slice | None = None) -> torch.Tensor:
        """Self-attention of a layer call's rows, a few prompts at a time: the (rows, HW, HW)
        probabilities of a chunk stay under ``SELF_ATTENTION_CHUNK_BYTES`` (at 32x32 the whole toy
        batch's would take 256 MiB, twice: scores and probabilities). ``kept``: the rows (prompts) that
        are the store's, in order; None: every row is. Returns (rows, HW, head dim)."""
        heads, hw = attn.heads, query.shape[1]
        prompts = query.shape[0] // heads
        kept_rows = range(prompts) if kept is None else range(*kept.indices(prompts))
        per = max(1, SELF_ATTENTION_CHUNK_BYTES // (heads * hw * key.shape[1] * query.element_size()))
        out = []
        for start in range(0, prompts, per):
            stop = min(start + per, prompts)
            h = slice(start * heads, stop * heads)
            probs = attention_probs_into(attn, query[h], key[h], None if attention_mask is None else attention_mask[h],
                                         self.scratch)
            # the store rows in this chunk: consecutive in the store, evenly spaced in the chunk
            mine = [j for j, row in enumerate(kept_rows) if start <= row < stop]
            if mine:
                local = slice(kept_rows[mine[0]] - start, kept_rows[mine[-1]] - start + 1, kept_rows.step)
                chunk = probs.view(stop - start, heads, hw, -1)[local].reshape(-1, hw, probs.shape[-1])
                self.store.add_self(self.layer, chunk, heads, height, rows=slice(mine[0], mine[-1] + 1),
                                    last=mine[-1] == len(kept_rows) - 1)
            out.append(torch.bmm(probs, value[h]))
            del probs
        return torch.cat(out) if len(out) > 1 else out[0]

    def _explicit(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb, selected: bool):
        """diffusers' AttnProcessor with the probabilities handed to the store (``selected``: the rows
        are the kept ones already)."""
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        height = None
        if input_ndim == 4:
            b, c, height, width = hidden_states.shape
            hidden_states = hidden_states.view(b, c, height * width).transpose(1, 2)
        batch, seq_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query, key, value = attn.head_to_batch_dim(query), attn.head_to_batch_dim(key), attn.head_to_batch_dim(value)
        if self.self_attention:
            hidden_states = self._self_attention_in_chunks(attn, query, key, value, attention_mask, height,
                                                           kept=None if selected else self.store.batch_slice)
        else:
            probs = attn.get_attention_scores(query, key, attention_mask)
            self.store.add(self.layer, probs, attn.heads, height, selected=selected)
            hidden_states = torch.bmm(probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def layer_resolutions(unet, sample_size: int | None = None) -> dict[str, int]:
    """Spatial resolution (side of the square feature map) of every attention layer of a diffusers
    ``UNet2DConditionModel``, from its block layout: down block i works at ``sample_size / 2**i``
    (every down block but the last halves the resolution), the mid block at the coarsest level and
    up block i at ``sample_size / 2**(n - 1 - i)``. For SD 1.5 (sample_size 64) that is 64/32/16/8.

    ``sample_size``: the side of the UNet's input when it is not the configured one (SD 1.5 run at
    768 px has 96x96 latents)."""
    n = len(unet.config.block_out_channels)
    size = sample_size if sample_size is not None else unet.config.sample_size
    size = size[0] if isinstance(size, (list, tuple)) else size
    out = {}
    for name in unet.attn_processors:
        part, rest = name.split(".", 1)
        if part == "down_blocks":
            level = int(rest.split(".", 1)[0])
        elif part == "up_blocks":
            level = n - 1 - int(rest.split(".", 1)[0])
        elif part == "mid_block":
            level = n - 1
        else:
            raise ValueError(f"attention layer {name!r} is in no down/mid/up block; not a UNet2DConditionModel layout")
        out[name] = size // 2**level
    return out


def cross_attention_layers(unet) -> list[str]:
    names = [n for n in unet.attn_processors if ".attn2." in n]
    if not names:
        raise ValueError("the UNet has no cross-attention (attn2) layers to record")
    return names


class recording:
    """Context manager: install recorders on every cross-attention layer (and on the self-attention
    layers if the store asks for affinities), restore the old processors after.

    If the UNet ran with the store active but no recorder saw a call (the processors were replaced
    inside the context, or the attention ran outside them: xformers, fused or compiled attention),
    leaving the context raises instead of handing back an empty store. Steps run with
    ``store.active = False`` on purpose do not count."""

    def __init__(self, unet, store: AttentionStore):
        self.unet, self.store = unet, store

    def __enter__(self) -> AttentionStore:
        self.previous = dict(self.unet.attn_processors)
        procs = dict(self.previous)
        for name in cross_attention_layers(self.unet):
            procs[name] = AttentionRecorder(self.store, name, fallback=self.previous[name])
        self.scratch = ScratchBuffers()
        if self.store.self_attention_resolution is not None:
            res = layer_resolutions(self.unet)
            for name in (n for n in self.previous if ".attn1." in n and res[n] == self.store.self_attention_resolution):
                procs[name] = AttentionRecorder(self.store, name, self_attention=True, fallback=self.previous[name],
                                                     scratch=self.scratch)
        self.recorders = {n for n, p in procs.items() if isinstance(p, AttentionRecorder)}
        self.unet.set_attn_processor(procs)  # diffusers empties the dict it is given
        self.active_calls, self.recorded_before = 0, self._recorded()
        self.hooks = [self.unet.register_forward_pre_hook(self._count_call)]
        if self.store.self_attention_resolution is not None:
            self.hooks += [self.unet.get_submodule(name.removesuffix(".processor")).register_forward_pre_hook(
                self._release_freed_pages) for name in self.previous]
        return self.store

    def _release_freed_pages(self, module, args) -> None:
        """Before each attention layer of a step that records self-attention: give freed heap pages
        back (``freemask.memory``). Those steps hold the explicit self-attention chunks and the layers'
        activations at once, and the heap pages earlier layers freed stay resident unless released;
        how many depends on where glibc placed each tensor, which differs from run to run. The
        measured effect on the stage's peak: docs/decisions.md#capture-memory-and-speed."""
        if self.store.active and self.store.self_active:
            release_free_memory()

    def _count_call(self, module, args) -> None:
        self.active_calls += bool(self.store.active)

    def _recorded(self) -> int:
        return sum(self.store.counts.values()) + self.store.self_count

    def __exit__(self, exc_type, *exc) -> None:
        for hook in self.hooks:
            hook.remove()
        self.scratch.clear()
        now = self.unet.attn_processors
        replaced = {n: type(now[n]).__name__ for n in sorted(self.recorders)
                    if not isinstance(now[n], AttentionRecorder)}
        self.unet.set_attn_processor(dict(self.previous))
        if exc_type is None and self.active_calls and self._recorded() == self.recorded_before:
            if replaced:
                names = ", ".join(f"{n} -> {c}" for n, c in list(replaced.items())[:3])
                names += ", ..." if len(replaced) > 3 else ""
                why = f"{len(replaced)} recorders were replaced inside the context ({names})"
            elif self.store.skipped_resolutions and not self.store.self_count:
                why = (f"the store records cross-attention at resolutions {sorted(self.store.resolutions)}, "
                       f"the UNet's cross-attention ran at {sorted(self.store.skipped_resolutions)}")
            else:
                why = "the UNet's forward did not call its attention processors (xformers, fused, compiled attention?)"
            raise RuntimeError(f"the UNet ran {self.active_calls} forward pass(es) with the attention store active, "
                               f"but no attention layer recorded anything: {why}")
