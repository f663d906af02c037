"""A learned affinity network (AffinityNet, Ahn & Kwak 2018): the optional alternative to the
generator's self-attention as the affinities of the paper's refinement (§3.1.2).

AffinityNet learns per-pixel features whose distances give the affinity of two pixels closer than
``radius``: ``a_ij = exp(-mean_c |f_i - f_j|)``, 1 for a pixel with itself, 0 farther apart. Its
labels come from the confident parts of a weak localisation map, as in AffinityNet -- here the
generator's own cross-attention map of the object (no ground truth): two pixels both at or above
``fg`` are a positive pair, both at or below ``bg`` a positive pair, one of each a negative pair,
any other pair is not used. The loss is AffinityNet's, ``L = L+_fg + L+_bg + 2 L-`` with
``L+ = mean -log a`` and ``L- = mean -log(1 - a)`` over the pairs of each group.

``dense_affinity`` gives the (B, N, N) affinities that ``refine.transition_matrix`` turns into
the walk's transition matrix, exactly where the self-attention would go.
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


@dataclass(frozen=True)
class NetShape:
    """What a saved network needs to be rebuilt: its widths and the affinity radius it learned."""

    features: int = 16
    width: int = 32
    radius: int = 4  # pixel pairs closer than this (Euclidean, on the affinity grid) get an affinity


class AffinityNet(nn.Module):
    """A small dilated CNN: an RGB image (B, 3, H, W) in [-1, 1] -> features (B, features, H, W)."""

    def __init__(self, shape: NetShape = NetShape()):
        super().__init__()
        self.shape = shape
        w = shape.width
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GroupNorm(4, w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=2, dilation=2), nn.GroupNorm(4, w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=4, dilation=4), nn.GroupNorm(4, w), nn.ReLU(),
            nn.Conv2d(w, shape.features, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def to_input(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [-1, 1]."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (batch, H, W, 3) uint8, got {images.shape} {images.dtype}")
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def neighbour_offsets(radius: int) -> list[tuple[int, int]]:
    """The (dy, dx) of each pixel pair once: 0 < dy^2 + dx^2 < radius^2, dy > 0 or (dy = 0, dx > 0)."""
    if radius < 2:
        raise ValueError(f"affinity radius must be >= 2 (a pixel's 4 neighbours), got {radius}")
    return [(dy, dx) for dy in range(radius) for dx in range(-radius + 1, radius)
            if 0 < dy * dy + dx * dx < radius * radius and (dy > 0 or dx > 0)]


def _shifted(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x at p, x at p + (dy, dx)) over the pixels p where both are inside the (..., H, W) grid."""
    h, w = x.shape[-2:]
    x0, x1 = max(0, -dx), w - max(0, dx)
    return x[..., 0:h - dy, x0:x1], x[..., dy:h, x0 + dx:x1 + dx]


def pair_affinities(features: torch.Tensor, offsets: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Per offset, (B, h, w) affinities ``exp(-mean_c |f_p - f_{p+offset}|)`` of the pairs inside the grid."""
    return [torch.exp(-(a - b).abs().mean(1)) for a, b in (_shifted(features, dy, dx) for dy, dx in offsets)]


def pair_labels(maps: torch.Tensor, offsets: list[tuple[int, int]], fg: float, bg: float
                ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per offset, the (B, h, w) bool masks of (foreground pairs, background pairs, negative pairs)
    from (B, H, W) maps in [0, 1]: confident foreground ``>= fg``, confident background ``<= bg``."""
    if not 0 <= bg < fg <= 1:
        raise ValueError(f"need 0 <= bg < fg <= 1, got bg={bg}, fg={fg}")
    is_fg, is_bg = maps >= fg, maps <= bg
    out = []
    for dy, dx in offsets:
        f0, f1 = _shifted(is_fg, dy, dx)
        b0, b1 = _shifted(is_bg, dy, dx)
        out.append((f0 & f1, b0 & b1, (f0 & b1) | (b0 & f1)))
    return out


def affinity_loss(affinities: list[torch.Tensor], labels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                  ) -> torch.Tensor:
    """AffinityNet's loss ``L+_fg + L+_bg + 2 L-``; a group without pairs in the batch adds nothing."""
    a = torch.cat([x.reshape(-1) for x in affinities])
    groups = [torch.cat([lab[k].reshape(-1) for lab in labels]) for k in range(3)]
    terms = []
    for k, (weight, target) in enumerate(((1.0, 1), (1.0, 1), (2.0, 0))):
        sel = a[groups[k]]
        if sel.numel():
            terms.append(weight * -(torch.log(sel + _EPS) if target else torch.log(1 - sel + _EPS)).mean())
    return torch.stack(terms).sum() if terms else a.sum() * 0


def grid_maps(maps: np.ndarray, side: int) -> torch.Tensor:
    """(B, H, W) maps in [0, 1] brought to the side x side affinity grid (area average)."""
    m = torch.from_numpy(np.asarray(maps, np.float32))[:, None]
    return F.adaptive_avg_pool2d(m, (side, side))[:, 0] if m.shape[-1] != side else m[:, 0]


def dense_affinity(net: AffinityNet, images: np.ndarray, side: int) -> torch.Tensor:
    """(B, side^2, side^2) float32 affinities of ``images`` on a side x side grid: the learned
    affinity for pairs closer than the net's radius (both directions), 1 on the diagonal, 0 elsewhere."""
    offsets = neighbour_offsets(net.shape.radius)
    with torch.no_grad():
        feats = net(to_input(images))
        if feats.shape[-1] != side:
            feats = F.adaptive_avg_pool2d(feats, (side, side))
    idx = torch.arange(side * side).reshape(side, side)
    out = torch.zeros((len(images), side * side, side * side))
    for (dy, dx), a in zip(offsets, pair_affinities(feats, offsets)):
        i, j = (t.reshape(-1) for t in _shifted(idx, dy, dx))
        out[:, i, j] = a.reshape(len(images), -1)
        out[:, j, i] = a.reshape(len(images), -1)
    out[:, torch.arange(side * side), torch.arange(side * side)] = 1.0
    return out


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    fg: float = 0.6  # confident foreground: map >= fg
    bg: float = 0.1  # confident background: map <= bg
    seed: int = 0


def train_affinity_net(images: np.ndarray, maps: np.ndarray, shape: NetShape = NetShape(),
                       settings: TrainSettings = TrainSettings(), progress: bool = True) -> tuple[AffinityNet, list[float]]:
    """Train on (B, H, W, 3) uint8 images and their (B, H, W) normalised attention maps (horizontal
    flips as augmentation); the same inputs and settings give the same weights. Returns the net and
    the loss of every step."""
    if len(images) != len(maps) or maps.shape[1:] != images.shape[1:3]:
        raise ValueError(f"{len(images)} images of {images.shape[1:3]} and {len(maps)} maps of {maps.shape[1:]}: "
                         f"one map of the image's size per image")
    torch.manual_seed(settings.seed)
    net = AffinityNet(shape)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr)
    offsets = neighbour_offsets(shape.radius)
    x_all, m_all = to_input(images), torch.from_numpy(np.asarray(maps, np.float32))
    rng = np.random.default_rng(settings.seed)
    losses = []
    for _ in tqdm(range(settings.steps), desc="train affinity net", disable=not progress):
        pick = torch.from_numpy(rng.choice(len(images), size=min(settings.batch_size, len(images)), replace=False))
        x, m = x_all[pick], m_all[pick]
        flip = torch.from_numpy(rng.random(len(pick)) < 0.5)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        m = torch.where(flip[:, None, None], m.flip(-1), m)
        loss = affinity_loss(pair_affinities(net(x), offsets), pair_labels(m, offsets, settings.fg, settings.bg))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return net.eval(), losses


def save_affinity_net(net: AffinityNet, out_dir: str | Path) -> None:
    """``weights.safetensors`` and ``config.json`` into ``out_dir``, replaced as a whole."""
    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "weights.safetensors"))
        (tmp / "config.json").write_text(json.dumps(asdict(net.shape), sort_keys=True, indent=2) + "\n")
    replace_dir(out_dir, write)


def load_affinity_net(path: str | Path) -> AffinityNet:
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "weights.safetensors").is_file():
        raise FileNotFoundError(f"{path}: no affinity net (config.json and weights.safetensors); "
                                f"train one with stages/train_affinity.py")
    hint = stage_hint(path) or "re-make it with stages/train_affinity.py"
    config = read_json(path / "config.json", hint)
    try:
        shape = NetShape(**config)
    except TypeError as err:  # keys other than NetShape's
        raise DataError(path / "config.json", f"not an affinity net config ({reason(err)})", hint) from None
    net = AffinityNet(shape)
    net.load_state_dict(load_safetensors(path / "weights.safetensors", hint))
    return net.eval()
