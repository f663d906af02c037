"""The text-to-image models Free-Mask samples from, behind one interface.

A ``Generator`` is a diffusers UNet with its text encoder, tokenizer and noise schedule, plus a
VAE for latent models. ``load_generator`` opens either kind of folder, offline:

- the toy world's pixel-space model (``freemask.diffusion.toy``: ``unet/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/``);
- any Stable Diffusion-family checkpoint (a diffusers pipeline folder with ``model_index.json``),
  or a repo id already in the Hugging Face cache: never downloaded; fp16 on a GPU.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, StableDiffusionPipeline
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.constants import HF_HUB_CACHE

# the samplers a generator can be run with (``generate.sampler``); each is configured from the
# generator's own noise schedule
SCHEDULERS = {"DDIM": DDIMScheduler, "DPMSolverMultistep": DPMSolverMultistepScheduler, "Euler": EulerDiscreteScheduler}
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # the safety checker is not loaded
_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


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
    Default device: CUDA if available (GPU ``LOCAL_RANK`` under torchrun); default dtype: float16 on
    CUDA, float32 elsewhere.

    Nothing is downloaded, nothing is asked of the hub: a repo id is resolved to its cache snapshot
    on disk first, so ``from_pretrained`` (with ``local_files_only=True``) only ever sees a local
    folder. (With a repo id, huggingface_hub 2.4 contacts the hub to build its user-agent even
    with ``local_files_only``; ``HF_HUB_OFFLINE=1``, also set here for the call, does not stop it
    because the hub reads that variable once, at import.)"""
    if device is None:  # under torchrun each process on its own GPU
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}" \
            if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
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



def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    img = ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8)
    return img.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class Generator:
    """A text-to-image diffusion model: the UNet denoises ``latent_side``-sized samples, conditioned on
    the text encoder's last hidden states; ``vae`` None means the UNet works on pixels."""

    unet: object
    text_encoder: object
    tokenizer: object
    scheduler: object  # its config is the noise schedule every sampler is built from
    vae: object | None = None
    kind: str = "toy"  # "toy" | "stable_diffusion"

    @property
    def scale_factor(self) -> int:
        """Image pixels per latent cell."""
        return 1 if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_side(self, height: int | None = None) -> int:
        """The latent side for an image of ``height`` pixels (None: the UNet's configured size); it
        must halve evenly at every UNet level, or the attention maps would not be square grids."""
        if height is None:
            size = self.unet.config.sample_size
            return size[0] if isinstance(size, (list, tuple)) else size
        factor = self.scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if height % factor:
            raise ValueError(f"height {height} is not a multiple of {factor} (image pixels per latent cell "
                             f"{self.scale_factor} times the UNet's downsampling)")
        return height // self.scale_factor

    def token_ids(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer
        enc = tok(list(prompts), padding="max_length", truncation=True, max_length=tok.model_max_length,
                  return_tensors="pt")
        unk = tok.unk_token_id
        # a word-level vocabulary has an unknown token of its own; a byte-level BPE (CLIP's) encodes
        # any text, its "unknown" token being the end-of-text one
        if unk is not None and unk not in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) \
                and (enc.input_ids == unk).any():
            vocab = tok.get_vocab()
            bad = sorted({w for p in prompts for w in p.split() if w not in vocab})
            raise KeyError(f"prompt words not in the generator's vocabulary: {', '.join(bad)}")
        return enc.input_ids

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        ids = self.token_ids(prompts).to(self.text_encoder.device)
        return self.text_encoder(ids).last_hidden_state

    @torch.no_grad()
    def decode(self, x: torch.Tensor) -> np.ndarray:
        """Denoised samples -> uint8 (B, H, W, 3) images; latents one at a time (the VAE decoder is the
        memory peak at 512 px)."""
        if self.vae is None:
            return _to_uint8(x)
        scale = self.vae.config.scaling_factor
        return np.concatenate([_to_uint8(self.vae.decode(z[None] / scale).sample.float()) for z in x])


def load_generator(path_or_repo_id: str | Path, device: str | torch.device | None = None,
                   dtype: torch.dtype | None = None, cache_dir: str | Path | None = None) -> Generator:
    """The generator in a toy folder, a diffusers pipeline folder or the HF cache (a repo id).
    Default device: CUDA if available; default dtype: float16 on CUDA, float32 elsewhere."""
    from .toy import ToyGenerator

    local = Path(str(path_or_repo_id)).expanduser()
    if local.is_dir() and not (local / "model_index.json").exists() and (local / "unet" / "config.json").exists():
        return ToyGenerator.load(local)
    pipe = load_pipeline(path_or_repo_id, device, dtype, cache_dir)
    return Generator(pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler, pipe.vae, "stable_diffusion")


