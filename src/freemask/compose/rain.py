"""A RAIN-style harmonization network (Ling et al., CVPR 2021, "Region-aware Adaptive Instance
Normalization for Image Harmonization"), small enough to train on a CPU.

A U-Net reads the composite and the pasted object's mask; in its decoder every normalisation is a
RAIN layer: background features are instance-normalised over the background region (with a
learned affine), foreground features are normalised over the foreground region and given the
*background's* mean and standard deviation (and their own learned affine). The net predicts a
per-pixel colour transform of the composite; pixels outside the mask are returned unchanged.

Saved as a folder: ``weights.safetensors`` and ``config.json`` (:class:`NetShape`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from ..errors import DataError, reason, stage_hint
from ..io import load_safetensors, read_json, replace_dir

_EPS = 1e-5
_MULTIPLE = 4  # two stride-2 levels: sides are padded to a multiple of this


@dataclass(frozen=True)
class NetShape:
    """What a saved network needs to be rebuilt."""

    width: int = 16  # channels of the finest level (x2 per level down)


def _region_stats(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (B, C, H, W) features over a (B, 1, H, W) soft region."""
    n = weight.sum((2, 3), keepdim=True) + _EPS
    mean = (x * weight).sum((2, 3), keepdim=True) / n
    var = (((x - mean) * weight) ** 2).sum((2, 3), keepdim=True) / n
    return mean, torch.sqrt(var + _EPS)


class RAIN(nn.Module):
    """Region-aware adaptive instance normalisation; ``mask`` (B, 1, H, W) in [0, 1], 1 = foreground."""

    def __init__(self, channels: int):
        super().__init__()
        self.fg_gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.fg_beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.bg_gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.bg_beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mu_b, sd_b = _region_stats(x, 1 - mask)
        mu_f, sd_f = _region_stats(x, mask)
        bg = (x - mu_b) / sd_b * (1 + self.bg_gamma) + self.bg_beta
        fg = ((x - mu_f) / sd_f * sd_b + mu_b) * (1 + self.fg_gamma) + self.fg_beta
        return fg * mask + bg * (1 - mask)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class RainNet(nn.Module):
    """(B, 3, H, W) composites in [-1, 1] and (B, 1, H, W) masks -> harmonized composites.

    As RainNet's U-Net, each decoder level is conv -> RAIN -> ReLU, and its output is concatenated
    with the encoder's (unnormalised) features of the level it is upsampled to, so the object's own
    colours reach the head; each decoder conv runs at the coarser side, before the upsampling. The
    head predicts a per-pixel colour transform, a gain and an offset per channel applied to the
    composite's [0, 1] values (as PCT-Net, Guerreiro et al. 2023, predicts per-pixel affine
    colour transforms), zero-initialised: the untrained net returns the composite.
    """

    def __init__(self, shape: NetShape = NetShape()):
        super().__init__()
        self.shape = shape
        w = shape.width
        self.enc1 = nn.Sequential(_conv(4, w), nn.ReLU(), _conv(w, w), nn.ReLU())
        self.enc2 = nn.Sequential(_conv(w, 2 * w, 2), nn.ReLU(), _conv(2 * w, 2 * w), nn.ReLU())
        self.enc3 = nn.Sequential(_conv(2 * w, 4 * w, 2), nn.ReLU(), _conv(4 * w, 4 * w), nn.ReLU())
        self.dec3, self.norm3 = _conv(4 * w, 4 * w), RAIN(4 * w)
        self.dec2, self.norm2 = _conv(8 * w, 2 * w), RAIN(2 * w)
        self.dec1, self.norm1 = _conv(4 * w, w), RAIN(w)
        self.head = nn.Conv2d(2 * w + 4, 6, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        ph, pw = -h % _MULTIPLE, -w % _MULTIPLE
        x, m = (F.pad(t, (0, pw, 0, ph), mode="replicate") for t in (images, masks))
        m2, m4 = F.avg_pool2d(m, 2), F.avg_pool2d(m, 4)
        e1 = self.enc1(torch.cat([x, m], 1))
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d = torch.cat([F.relu(self.norm3(self.dec3(e3), m4)), e3], 1)
        d = torch.cat([F.interpolate(F.relu(self.norm2(self.dec2(d), m4)), scale_factor=2.0), e2], 1)
        d = torch.cat([F.interpolate(F.relu(self.norm1(self.dec1(d), m2)), scale_factor=2.0), e1], 1)
        gain, offset = self.head(torch.cat([d, x, m], 1)).chunk(2, 1)
        out = (((x + 1) / 2 * (1 + gain) + offset) * 2 - 1)[..., :h, :w]
        return out * masks + images * (1 - masks)


def to_tensors(images: np.ndarray, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W, 3) uint8 and (B, H, W) bool -> (B, 3, H, W) in [-1, 1] and (B, 1, H, W) float."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (batch, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks {masks.shape} do not match images {images.shape[:3]}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, torch.from_numpy(np.asarray(masks, np.float32))[:, None]


def apply_rain(net: RainNet, images: np.ndarray, masks: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Harmonize (B, H, W, 3) uint8 composites inside their (B, H, W) bool masks; uint8 out, pixels
    outside the masks bit for bit as they came in."""
    out = np.array(images, copy=True)
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x, m = to_tensors(images[s:s + batch_size], masks[s:s + batch_size])
            y = ((net(x, m).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            sel = np.asarray(masks[s:s + batch_size], bool)
            out[s:s + batch_size][sel] = y[sel]
    return out


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0


def masked_l1(out: torch.Tensor, target: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the masked pixels of the batch (every channel)."""
    return ((out - target).abs() * masks).sum() / (3 * masks.sum() + _EPS)


def train_rain(composites: np.ndarray, targets: np.ndarray, masks: np.ndarray, shape: NetShape = NetShape(),
               settings: TrainSettings = TrainSettings(), progress: bool = True) -> tuple[RainNet, list[float]]:
    """Train on (B, H, W, 3) uint8 composites, their correctly lit targets and (B, H, W) bool masks
    (horizontal flips as augmentation; AdamW with a cosine decay); the same inputs and settings give
    the same weights. Returns the net and the loss of every step."""
    if composites.shape != targets.shape:
        raise ValueError(f"composites {composites.shape} and targets {targets.shape} differ")
    torch.manual_seed(settings.seed)
    net = RainNet(shape)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
    x_all, m_all = to_tensors(composites, masks)
    y_all = to_tensors(targets, masks)[0]
    rng = np.random.default_rng(settings.seed)
    losses = []
    for _ in tqdm(range(settings.steps), desc="train harmonizer", disable=not progress):
        pick = torch.from_numpy(rng.choice(len(x_all), size=min(settings.batch_size, len(x_all)), replace=False))
        flip = torch.from_numpy(rng.random(len(pick)) < 0.5)[:, None, None, None]
        x, y, m = (torch.where(flip, t[pick].flip(-1), t[pick]) for t in (x_all, y_all, m_all))
        loss = masked_l1(net(x, m), y, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return net.eval(), losses


def save_harmonizer(net: RainNet, out_dir: str | Path) -> None:
    """``weights.safetensors`` and ``config.json`` into ``out_dir``, replaced as a whole."""
    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "weights.safetensors"))
        (tmp / "config.json").write_text(json.dumps(asdict(net.shape), sort_keys=True, indent=2) + "\n")
    replace_dir(out_dir, write)


def load_harmonizer(path: str | Path, key: str | None = None) -> RainNet:
    """The network saved in folder ``path``; a missing or damaged file is a DataError naming it (and
    ``key``, the params key that named the folder, if one did)."""
    path = Path(path)
    hint = stage_hint(path) or "re-make it with stages/train_harmonizer.py"
    for name in ("config.json", "weights.safetensors"):
        if not (path / name).is_file():
            raise DataError(path / name, "missing: not a harmonizer folder (config.json and weights.safetensors)",
                            hint, key=key)
    config = read_json(path / "config.json", hint)
    try:
        shape = NetShape(**config)
    except TypeError as err:  # keys other than NetShape's
        raise DataError(path / "config.json", f"not a harmonizer config ({reason(err)})", hint, key=key) from None
    net = RainNet(shape)
    try:
        net.load_state_dict(load_safetensors(path / "weights.safetensors", hint, key=key))
    except RuntimeError as err:  # tensors missing, extra or of other shapes than the config's net
        raise DataError(path / "weights.safetensors", f"does not fit config.json ({reason(err)})", hint,
                        key=key) from None
    return net.eval()
