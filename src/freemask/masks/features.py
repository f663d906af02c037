"""Per-pixel image features for PaintSeg's contrastive potential (``masks.paintseg``).

A feature extractor maps uint8 (B, H, W, 3) images to float (B, C, h, w) features on a grid of
its own; the Euclidean distance between two feature vectors is the dissimilarity PaintSeg uses.

- ``DinoFeatures``: DINO ViT patch tokens (Caron et al. 2021; ViT-S/8 for real profiles, PaintSeg
  Table B), through ``transformers`` from a local folder, L2-normalised.
- ``ColourFeatures``: CIE Lab colour and pixel position -- the toy world's choice (docs/paintseg.md).
- ``AffinityFeatures``: the learned AffinityNet's features (``masks.affinity_net``).
- ``UNetFeatures``: the generator UNet's decoder activations on the image noised to a low
  timestep (DIFT, Tang et al. 2023), L2-normalised.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..diffusion.models import Generator, _hub_offline

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FeatureExtractor(Protocol):
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float (B, C, h, w)."""
        ...


def _unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (batch, H, W, 3) uint8, got {images.shape} {images.dtype}")
    return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255.0


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (B, 3, H, W) in [0, 1] -> CIE Lab (D65): L in [0, 100], a and b about [-128, 127]."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=rgb.dtype)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin) / torch.tensor([0.95047, 1.0, 1.08883]).view(1, 3, 1, 1)
    f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


class ColourFeatures:
    """Lab colour / 100 and the pixel's (y, x) in [0, 1] times ``position_weight``, at full resolution."""

    def __init__(self, position_weight: float = 0.5):
        self.position_weight = position_weight

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        lab = rgb_to_lab(_unit(images)) / 100.0
        b, _, h, w = lab.shape
        yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        pos = torch.stack([yy, xx]).expand(b, 2, h, w) * self.position_weight
        return torch.cat([lab, pos], 1)


class AffinityFeatures:
    """The features of a trained AffinityNet folder (``affinity_net.load_affinity_net``), full resolution."""

    def __init__(self, path: str | Path):
        from .affinity_net import load_affinity_net

        self.net = load_affinity_net(path)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        from .affinity_net import to_input

        return self.net(to_input(images))


class UNetFeatures:
    """DIFT: the output of decoder block ``up_block`` of the generator's UNet, run unconditioned (empty
    prompt) on the image forward-noised to ``timestep`` with the same noise (seed 0) for every image,
    so two images' features differ only where the images do. Pixel-space generators only."""

    def __init__(self, gen: Generator, timestep: int = 100, up_block: int = 1):
        if gen.vae is not None:
            raise ValueError("UNetFeatures works on a pixel-space generator (the toy one); use DinoFeatures")
        if not 0 <= up_block < len(gen.unet.up_blocks):
            raise ValueError(f"up_block {up_block}: the UNet has {len(gen.unet.up_blocks)} decoder blocks")
        self.gen, self.timestep, self.up_block = gen, timestep, up_block

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        unet = self.gen.unet
        x0 = _unit(images) * 2 - 1
        noise = torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(0)).expand_as(x0)
        t = torch.tensor([self.timestep])
        x = self.gen.scheduler.add_noise(x0, noise, t)
        got = {}
        hook = unet.up_blocks[self.up_block].register_forward_hook(lambda m, i, o: got.__setitem__("f", o))
        try:
            unet(x.to(unet.device, unet.dtype), self.timestep,
                 encoder_hidden_states=self.gen.encode([""] * len(images)))
        finally:
            hook.remove()
        return F.normalize(got["f"].float().cpu(), dim=1)


class DinoFeatures:
    """DINO patch tokens from a local ``transformers`` ViT folder (``ViTModel``; e.g. facebook/dino-vits8
    downloaded by the user), never from the hub. Images are resized to ``size`` (default: the
    model's ``image_size``; a multiple of its patch size) and normalised by the folder's
    ``preprocessor_config.json`` mean/std (ImageNet's without one); the (size / patch)^2 patch
    tokens of the last layer, L2-normalised, come back as a (B, hidden, grid, grid) map."""

    def __init__(self, path: str | Path, size: int | None = None, device: str | torch.device | None = None):
        from transformers import ViTModel

        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no DINO ViT folder (config.json and weights); freemask never "
                                    f"downloads weights: put facebook/dino-vits8 there yourself")
        with _hub_offline():
            self.model = ViTModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False).eval()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        patch = self.model.config.patch_size
        self.size = size or self.model.config.image_size
        if self.size % patch:
            raise ValueError(f"DINO input size {self.size} is not a multiple of the patch size {patch}")
        self.grid = self.size // patch
        pre = path / "preprocessor_config.json"
        cfg = json.loads(pre.read_text()) if pre.is_file() else {}
        self.mean = torch.tensor(cfg.get("image_mean", IMAGENET_MEAN)).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("image_std", IMAGENET_STD)).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        x = F.interpolate(_unit(images), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=True)
        x = ((x - self.mean) / self.std).to(self.device, self.model.dtype)
        tokens = self.model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 1:]
        b, n, c = tokens.shape
        grid = tokens.float().cpu().transpose(1, 2).reshape(b, c, self.grid, self.grid)
        return F.normalize(grid, dim=1)
