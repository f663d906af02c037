"""Painters: repaint part of an image with a diffusion model, the rest kept (PaintSeg's paint step).

One interface, ``Painter.paint(images, keep, prompts, seeds)``: uint8 (B, H, W, 3) images, bool
(B, H, W) ``keep`` (True: the pixel is kept, False: it is repainted), one prompt and one seed per
image; returns the painted uint8 (B, H, W, 3) images, the kept pixels pasted back unchanged. Two
painters:

- ``RePaintPainter``: RePaint (Lugmayr et al., 2022) with any freemask ``Generator`` -- the toy
  pixel-space model, or an SD-family text-to-image model in its latent space (the mask brought to
  the latent grid); no inpainting training needed.
- ``StableDiffusionInpaintPainter``: a diffusers Stable Diffusion *inpainting* checkpoint (a UNet
  with 9 input channels) from a local folder or the HF cache, offline.

Every sample draws its noise from a ``torch.Generator`` of its own seed, so a painting does not
depend on the batch it is painted in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .models import Generator, _hub_offline, resolve_model
from .sampling import scheduler


class Painter(Protocol):
    def paint(self, images: np.ndarray, keep: np.ndarray, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """Repaint the pixels where ``keep`` is False; uint8 (B, H, W, 3) in and out."""
        ...


def check_paint_inputs(images: np.ndarray, keep: np.ndarray, prompts: list[str], seeds: list[int]) -> None:
    """A ValueError naming what does not fit: images uint8 (B, H, W, 3), keep bool (B, H, W), B prompts and seeds."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (batch, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if keep.shape != images.shape[:3] or keep.dtype != bool:
        raise ValueError(f"keep must be a bool (batch, H, W) mask of the images' size {images.shape[:3]}, "
                         f"got {keep.shape} {keep.dtype}")
    if not len(prompts) == len(seeds) == len(images):
        raise ValueError(f"{len(images)} images, {len(prompts)} prompts and {len(seeds)} seeds: one of each per image")


def paste_kept(images: np.ndarray, keep: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """The painted images with the kept pixels of the originals, unchanged."""
    return np.where(keep[..., None], images, painted)


def repaint_schedule(steps: int, jump_length: int, resample: int) -> list[tuple[int, int]]:
    """RePaint's walk over the noise levels 0 (pure noise) .. ``steps`` (the clean image), as
    (from, to) moves: down one level each step (to = from + 1: a denoising step) and, at every
    ``jump_length``-th level, ``resample - 1`` times back up ``jump_length`` levels (one renoising move
    each) and down again -- the back-and-forth jumps that let the unknown region harmonise with the
    known one (Lugmayr et al. 2022, §4.2). ``resample`` 1 is plain masked sampling."""
    if steps < 1 or jump_length < 1 or resample < 1:
        raise ValueError(f"steps ({steps}), jump_length ({jump_length}) and resample ({resample}) must be >= 1")
    jumps = {j: resample - 1 for j in range(jump_length, steps, jump_length)}
    moves, level = [], 0
    while level < steps:
        moves.append((level, level + 1))
        level += 1
        if jumps.get(level, 0) > 0:
            jumps[level] -= 1
            for _ in range(jump_length):
                moves.append((level, level - 1))
                level -= 1
    return moves


class RePaintPainter:
    """RePaint with a freemask ``Generator``: DDIM (deterministic, eta 0) reverse steps on the
    generator's own noise schedule; after every step the known region is replaced by the original
    forward-noised to the new level (its clean value at the last level), so the model only invents
    the unknown region, conditioned on ``prompts`` (classifier-free ``guidance`` at timesteps <=
    ``guidance_max_timestep``, as ``sampling.sample`` guides). ``jump_length``/``resample``:
    ``repaint_schedule``. A latent model paints in its latent space: the image is encoded (the
    latent distribution's mean), a latent cell is kept only if all its pixels are, and the decoded
    image gets the kept pixels back."""

    def __init__(self, gen: Generator, steps: int = 10, jump_length: int = 1, resample: int = 1,
                 guidance: float = 1.0, guidance_max_timestep: int | None = None):
        repaint_schedule(steps, jump_length, resample)  # checks the numbers
        self.gen, self.steps, self.jump_length, self.resample = gen, steps, jump_length, resample
        self.guidance, self.guidance_max_timestep = guidance, guidance_max_timestep

    def _encode(self, images: np.ndarray) -> torch.Tensor:
        unet, vae = self.gen.unet, self.gen.vae
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if vae is None:
            return x.to(unet.device, unet.dtype)
        x = x.to(vae.device, vae.dtype)
        return torch.cat([vae.encode(z[None]).latent_dist.mean for z in x]) * vae.config.scaling_factor

    def _latent_keep(self, keep: np.ndarray, side: int) -> torch.Tensor:
        k = torch.from_numpy(keep).float()[:, None]
        if k.shape[-1] != side:  # kept only where every pixel of the cell is kept
            k = -F.adaptive_max_pool2d(-k, (side, side))
        return k.to(self.gen.unet.device, self.gen.unet.dtype)

    @torch.no_grad()
    def paint(self, images: np.ndarray, keep: np.ndarray, prompts: list[str], seeds: list[int]) -> np.ndarray:
        check_paint_inputs(images, keep, prompts, seeds)
        gen, unet, n = self.gen, self.gen.unet, len(images)
        x0 = self._encode(images)
        known = self._latent_keep(keep, x0.shape[-1])
        cond = gen.encode(prompts)
        both = torch.cat([gen.encode([""] * n), cond]) if self.guidance > 1.0 else None
        sched = scheduler(gen, "DDIM", self.steps)
        ts = [int(t) for t in sched.timesteps]
        acp = sched.alphas_cumprod
        alpha = [float(acp[t]) for t in ts] + [1.0]  # alpha-bar of each level; the last one is the clean image
        rngs = [torch.Generator().manual_seed(int(s)) for s in seeds]

        def noise() -> torch.Tensor:  # per sample from its own generator
            return torch.stack([torch.randn(x0.shape[1:], generator=g) for g in rngs]).to(x0.device, x0.dtype)

        def known_at(level: int) -> torch.Tensor:
            a = alpha[level]
            return x0 if level == len(ts) else a ** 0.5 * x0 + (1 - a) ** 0.5 * noise()

        x = noise() * sched.init_noise_sigma
        x = known * known_at(0) + (1 - known) * x
        for src, dst in repaint_schedule(self.steps, self.jump_length, self.resample):
            if dst > src:  # denoise one level, then the known region from the original at the new level
                t = ts[src]
                guided = both is not None and (self.guidance_max_timestep is None or t <= self.guidance_max_timestep)
                if guided:
                    eu, ec = unet(sched.scale_model_input(torch.cat([x, x]), t), t,
                                  encoder_hidden_states=both).sample.chunk(2)
                    out = eu + self.guidance * (ec - eu)
                else:
                    out = unet(sched.scale_model_input(x, t), t, encoder_hidden_states=cond).sample
                x = sched.step(out, t, x).prev_sample
                x = known * known_at(dst) + (1 - known) * x
            else:  # renoise one level up: q(x_src-1 | x_src)
                ratio = alpha[dst] / alpha[src]
                x = ratio ** 0.5 * x + (1 - ratio) ** 0.5 * noise()
        return paste_kept(images, keep, gen.decode(x))


class StableDiffusionInpaintPainter:
    """A Stable Diffusion inpainting checkpoint (``StableDiffusionInpaintPipeline``) from a local
    diffusers folder or a repo id in the HF cache, never downloaded (``models.resolve_model``);
    ``steps`` sampling steps, classifier-free ``guidance``, safety checker off."""

    def __init__(self, path: str | Path, steps: int = 25, guidance: float = 7.5,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        from diffusers import StableDiffusionInpaintPipeline

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        folder = resolve_model(path)
        with _hub_offline():
            try:
                pipe = StableDiffusionInpaintPipeline.from_pretrained(
                    folder, dtype=dtype, local_files_only=True, safety_checker=None, feature_extractor=None,
                    requires_safety_checker=False)
            except OSError as err:
                raise FileNotFoundError(f"{path}: incomplete inpainting pipeline folder {folder}: "
                                        f"{str(err).splitlines()[0]}") from None
        if pipe.unet.config.in_channels != 9:
            raise ValueError(f"{path}: not an inpainting checkpoint (its UNet takes {pipe.unet.config.in_channels} "
                             f"input channels, an inpainting UNet 9); use RePaintPainter with a text-to-image model")
        pipe.set_progress_bar_config(disable=True)
        self.pipe, self.steps, self.guidance = pipe.to(device), steps, guidance

    @torch.no_grad()
    def paint(self, images: np.ndarray, keep: np.ndarray, prompts: list[str], seeds: list[int]) -> np.ndarray:
        from PIL import Image

        check_paint_inputs(images, keep, prompts, seeds)
        h, w = images.shape[1:3]
        out = self.pipe(prompt=list(prompts), image=[Image.fromarray(i) for i in images],
                        mask_image=[Image.fromarray(np.where(k, 0, 255).astype(np.uint8)) for k in keep],
                        height=h, width=w, num_inference_steps=self.steps, guidance_scale=self.guidance,
                        generator=[torch.Generator().manual_seed(int(s)) for s in seeds], output_type="np").images
        painted = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
        return paste_kept(images, keep, painted)
