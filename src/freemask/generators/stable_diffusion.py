"""Stable Diffusion (any diffusers SD-family checkpoint) as a Free-Mask generator.

``load_pipeline`` opens a checkpoint the user already has (a local diffusers folder or the HF
cache, never downloaded), ``SDProfile`` is the validated generation profile (``profiles/sd15.yaml``),
``make_prompt`` fills the prompt template and ``generate_with_masks`` samples with classifier-free
guidance while recording the conditional branch's cross-attention: one normalised map per
requested word, a word of several tokens averaged into one map, and one mask per word -- by the
paper's refinement (§3.1.2: AffinityNet's random walk on the generator's own self-attention, then
the grid threshold that best matches the walk's foreground), as the toy pipeline makes them, or by
Otsu's threshold.
"""
from __future__ import annotations

import os
import re
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, StableDiffusionPipeline
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.constants import HF_HUB_CACHE
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ..masks.refine import affinity_masks, threshold_grid, transition_matrix
from ..masks.threshold import normalize01, threshold
from ..params import ParamsError, Refine, _describe
from .attention import AttentionStore, cross_attention_layers, layer_resolutions, recording, word_maps, word_tokens
from .sampling import initial_noise

SCHEDULERS = {"DDIM": DDIMScheduler, "DPMSolverMultistep": DPMSolverMultistepScheduler, "Euler": EulerDiscreteScheduler}
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # the safety checker is not loaded
TEMPLATE_FIELDS = {"object", "preposition", "background"}
MASK_RULES = ("affinity", "otsu")
# the most bytes of float64 transition matrices held at once (a 32x32 grid's is 8 MiB an image)
TRANSITION_CHUNK_BYTES = 64 * 2**20
# the keys whose value must be one of a fixed set: (what the error calls it, the options)
_CHOICES = {"scheduler": ("scheduler", SCHEDULERS), "mask_rule": ("mask rule", MASK_RULES)}
_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


class SDProfile(BaseModel):
    """How to sample a Stable Diffusion checkpoint and which attention becomes the masks."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str  # a local diffusers folder, or a repo id already in the HF cache
    scheduler: str = "DDIM"  # a key of SCHEDULERS
    steps: int = Field(50, gt=0)
    guidance: float = Field(7.5, ge=1)  # 1: no classifier-free guidance
    height: int = Field(512, gt=0, multiple_of=8)
    width: int = Field(512, gt=0, multiple_of=8)
    template: str = "a photo of a {object} {preposition} the {background}"
    # class -> sub-class phrases used in its place, one chosen per sample from the sample's seed
    varieties: dict[str, list[str]] = Field(default_factory=dict)
    resolutions: list[int] = Field(default_factory=lambda: [16, 32], min_length=1)  # latent-side attention maps
    max_timestep: int = Field(1000, ge=0, le=1000)  # record only the steps with timestep <= this
    # how a word's map becomes its mask: "affinity" (paper §3.1.2, with ``refine``) or "otsu"
    mask_rule: str = "affinity"
    # the toy pipeline's generate.refine: self-attention at ``resolution`` (latent side) recorded at
    # the last ``self_attention_steps`` recorded steps, walked with ``beta``, ``walk_steps``, ``bg_power``
    refine: Refine = Field(default_factory=Refine)

    @field_validator("scheduler", "mask_rule")
    @classmethod
    def _known_choice(cls, v: str, info: ValidationInfo) -> str:
        what, options = _CHOICES[info.field_name]
        if v not in options:
            raise ValueError(f"unknown {what} {v!r}; choose one of {', '.join(options)}")
        return v

    @field_validator("width")
    @classmethod
    def _square(cls, v: int, info: ValidationInfo) -> int:
        if "height" in info.data and v != info.data["height"]:  # the attention store keeps square maps
            raise ValueError(f"width {v} != height {info.data['height']}: only square images are supported")
        return v

    @field_validator("template")
    @classmethod
    def _template_fields(cls, v: str) -> str:
        fields = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        if fields != TEMPLATE_FIELDS:
            raise ValueError(f"the template must use exactly the fields {sorted(TEMPLATE_FIELDS)}, "
                             f"it uses {sorted(fields)}")
        return v

    @field_validator("varieties")
    @classmethod
    def _non_empty(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = [k for k, words in v.items() if not words or not all(w.strip() for w in words)]
        if empty:
            raise ValueError(f"empty sub-class list or word for {', '.join(empty)}")
        return v


def load_profile(path: str | Path) -> SDProfile:
    """Read and validate a profile YAML; every bad key is named."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: profile not found") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of profile keys, got {type(data).__name__}")
    try:
        return SDProfile.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_describe(err, str(path), schema="stable_diffusion.SDProfile")) from None


def make_prompt(cfg: SDProfile, cls: str, preposition: str, background: str, seed: int) -> tuple[str, str]:
    """(prompt, object phrase): the class, or the sub-class its ``varieties`` entry picks for this seed."""
    options = cfg.varieties.get(cls)
    phrase = options[int(np.random.default_rng(seed).integers(len(options)))] if options else cls
    return cfg.template.format(object=phrase, preposition=preposition, background=background), phrase


@contextmanager
def _hub_offline() -> Iterator[None]:
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def resolve_model(path_or_repo_id: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The local diffusers folder of a model: the path itself, or the snapshot of a repo id in the
    HF cache (``cache_dir``, default the hub's; looked up on disk only, ``revision="main"``)."""
    name = str(path_or_repo_id)
    local = Path(name).expanduser()
    if local.is_file():
        raise FileNotFoundError(f"{name} is a file; give the diffusers folder (model_index.json, unet/, vae/, ...)")
    if local.is_dir():
        if not (local / "model_index.json").is_file():
            raise FileNotFoundError(f"{name}: not a diffusers pipeline folder (no model_index.json)")
        return _complete(local, name)
    if local.is_absolute() or name.startswith((".", "~")) or not _REPO_ID.fullmatch(name):
        raise FileNotFoundError(f"{name}: no such model directory")
    found = try_to_load_from_cache(name, "model_index.json", cache_dir=cache_dir)
    if not isinstance(found, str):
        raise FileNotFoundError(f"{name}: no such directory and no such model in the Hugging Face cache "
                                f"({cache_dir or HF_HUB_CACHE}); freemask never downloads weights: download it "
                                f"yourself or point `model` at a local folder")
    return _complete(Path(found).parent, name)


def _complete(folder: Path, name: str) -> Path:
    missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"{name}: incomplete pipeline folder {folder}: no "
                                f"{', '.join(m + '/' for m in missing)}")
    return folder


def load_pipeline(path_or_repo_id: str | Path, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None, cache_dir: str | Path | None = None) -> StableDiffusionPipeline:
    """An SD-family pipeline from a local diffusers folder or the HF cache, safety checker off.
    Default device: CUDA if available; default dtype: float16 on CUDA, float32 elsewhere.

    Nothing is downloaded, nothing is asked of the hub: a repo id is resolved to its cache snapshot
    on disk first, so ``from_pretrained`` (with ``local_files_only=True``) only ever sees a local
    folder. (With a repo id, huggingface_hub 2.4 contacts the hub to build its user-agent even
    with ``local_files_only``; ``HF_HUB_OFFLINE=1``, also set here for the call, does not stop it
    because the hub reads that variable once, at import.)"""
    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    folder = resolve_model(path_or_repo_id, cache_dir)
    with _hub_offline():
        try:
            pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True,
                                                           safety_checker=None, feature_extractor=None,
                                                           requires_safety_checker=False)
        except OSError as err:
            raise FileNotFoundError(f"{path_or_repo_id}: incomplete pipeline folder {folder}: "
                                    f"{str(err).splitlines()[0]}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@dataclass
class SDSamples:
    images: np.ndarray  # (B, H, W, 3) uint8
    maps: np.ndarray  # (B, W, H, W) float32 in [0, 1], one per requested word
    masks: np.ndarray  # (B, W, H, W) bool, each map's mask by the profile's mask_rule
    layers: dict[str, int]  # resolution of every cross-attention layer that recorded


def latent_side(pipe: StableDiffusionPipeline, cfg: SDProfile) -> int:
    """The latent side for ``cfg.height``; it must halve evenly at every UNet level."""
    factor = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    if cfg.height % factor:
        raise ValueError(f"height {cfg.height} is not a multiple of {factor} (VAE factor {pipe.vae_scale_factor} "
                         f"times the UNet's downsampling): its attention maps would not be square grids")
    return cfg.height // pipe.vae_scale_factor


def _encode(pipe: StableDiffusionPipeline, prompts: list[str]) -> torch.Tensor:
    tok = pipe.tokenizer
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    return pipe.text_encoder(ids.to(pipe.text_encoder.device))[0]


def _decode(pipe: StableDiffusionPipeline, latents: torch.Tensor) -> np.ndarray:
    """One sample at a time: the VAE decoder is the memory peak at 512 px."""
    out = []
    for z in latents:
        img = pipe.vae.decode(z[None] / pipe.vae.config.scaling_factor).sample[0].float()
        out.append(((img.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    return np.stack(out)


def refined_masks(store: AttentionStore, maps: np.ndarray, refine: Refine) -> np.ndarray:
    """(B, W, H, W) bool: paper §3.1.2 on every word's map, with the B images' recorded self-attention
    as affinities; the transition matrices are made a few images at a time (flat memory in B)."""
    grid, n = threshold_grid(refine.grid_step), maps.shape[0]
    masks = np.zeros(maps.shape, dtype=bool)
    side = store.self_sum.shape[-1] if store.self_sum is not None else 0
    per = max(1, TRANSITION_CHUNK_BYTES // max(1, 8 * side * side))
    for start in range(0, n, per):
        rows = slice(start, min(start + per, n))
        transition = transition_matrix(store.affinity(rows).cpu(), refine.beta)
        for w in range(maps.shape[1]):
            masks[rows, w] = affinity_masks(maps[rows, w], transition, refine.walk_steps, refine.bg_power, grid)[2]
    return masks


def _check_layers(unet, side: int, cfg: SDProfile) -> None:
    """The asked cross-attention resolutions and (for the affinity rule) self-attention resolution exist."""
    res = layer_resolutions(unet, side)
    cross = set(cross_attention_layers(unet))
    available = {res[name] for name in cross}
    if not set(cfg.resolutions) <= available:
        raise ValueError(f"resolutions {sorted(set(cfg.resolutions) - available)}: at {cfg.height} px this UNet has "
                         f"cross-attention at {sorted(available)}")
    self_available = {r for name, r in res.items() if name not in cross}
    if cfg.mask_rule == "affinity" and cfg.refine.resolution not in self_available:
        raise ValueError(f"refine.resolution={cfg.refine.resolution}: at {cfg.height} px this UNet has "
                         f"self-attention at {sorted(self_available)}")


@torch.no_grad()
def generate_with_masks(pipe: StableDiffusionPipeline, prompts: Sequence[str], words: Sequence[Sequence[str]],
                        seeds: Sequence[int], cfg: SDProfile) -> SDSamples:
    """Sample one image per prompt (its own seed's noise, so it does not depend on its batch) and
    the cross-attention map of each of its ``words``, averaged over the steps with timestep <=
    ``cfg.max_timestep`` and the layers at ``cfg.resolutions``, upsampled to the image size; then
    each map's mask by ``cfg.mask_rule``."""
    prompts, n = list(prompts), len(prompts)
    if not n or not n == len(words) == len(seeds):
        raise ValueError(f"{n} prompts, {len(words)} word lists and {len(seeds)} seeds: one of each per sample")
    unet = pipe.unet
    side = latent_side(pipe, cfg)
    _check_layers(unet, side, cfg)
    sched = SCHEDULERS[cfg.scheduler].from_config(pipe.scheduler.config)
    sched.set_timesteps(cfg.steps, device=unet.device)
    recorded = [float(t) for t in sched.timesteps if float(t) <= cfg.max_timestep]
    if not recorded:
        raise ValueError(f"max_timestep={cfg.max_timestep} is below every one of the {cfg.steps} sampling timesteps "
                         f"(smallest {float(sched.timesteps[-1]):g}); nothing would be recorded")
    k = cfg.refine.self_attention_steps
    self_recorded = set(recorded if k is None else recorded[-k:])
    tokens = word_tokens(pipe.tokenizer, prompts, words)
    guided = cfg.guidance > 1.0
    cond = _encode(pipe, prompts)
    context = torch.cat([_encode(pipe, [""] * n), cond]) if guided else cond
    store = AttentionStore(tokens.index, batch_slice=slice(n, 2 * n) if guided else None,
                           self_attention_resolution=cfg.refine.resolution if cfg.mask_rule == "affinity" else None,
                           resolutions=cfg.resolutions)
    x = initial_noise(list(seeds), (unet.config.in_channels, side, side)) * sched.init_noise_sigma
    x = x.to(unet.device, unet.dtype)
    with recording(unet, store):
        for t in sched.timesteps:
            store.active = float(t) <= cfg.max_timestep
            store.self_active = float(t) in self_recorded
            inp = sched.scale_model_input(torch.cat([x, x]) if guided else x, t)
            out = unet(inp, t, encoder_hidden_states=context).sample
            if guided:
                uncond, cond_out = out.chunk(2)
                out = uncond + cfg.guidance * (cond_out - uncond)
            x = sched.step(out, t, x).prev_sample
    maps = normalize01(word_maps(store, tokens, cfg.height, cfg.resolutions).cpu().numpy()).astype(np.float32)
    if cfg.mask_rule == "affinity":
        masks = refined_masks(store, maps, cfg.refine)
    else:
        masks = np.stack([[threshold(m, "otsu") for m in per_image] for per_image in maps])
    return SDSamples(images=_decode(pipe, x), maps=maps, masks=masks, layers=dict(store.resolution))
