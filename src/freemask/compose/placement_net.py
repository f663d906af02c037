"""FOPA-style placement networks and the paper's composite placement loss (§3.2.2, eq. 4-7).

- :class:`PlacementNet` (FOPA, Niu et al. 2022): a U-Net-like encoder-decoder. The background scene
  and the foreground cut-out with its mask (each resized into a ``canvas`` x ``canvas`` image) are
  encoded separately; the decoder gives, for each of ``n_scales`` box sides and each cell of a
  ``canvas/2`` grid of box centres, a ``features``-dim feature ``F_out`` and from it a score in
  [0, 1] for pasting the cut-out there at that side (the heatmap).
- :class:`CompositeEncoder` (FOPA's SOPA teacher): features of a composite image and its pasted
  mask, trained to tell plausible composites from implausible ones. FOPA distils its features into
  ``F_out`` at each position; that is the semantic term here.

Placements are box placements ``(cx, cy, side)``: the cut-out's bounding-box centre and longer side,
fractions of the image (what ``compose.paste`` takes). Boxes are ``(cx, cy, w, h)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetShape:
    """What a saved network needs to be rebuilt."""

    canvas: int = 32  # input side; the heatmap grid is canvas // 2
    width: int = 16
    features: int = 8  # the dimension of F_out and of the teacher's composite features
    scale_min: float = 0.12  # the heatmap's box sides: n_scales from scale_min to scale_max, evenly in log
    scale_max: float = 0.66
    n_scales: int = 24
    classes: tuple[str, ...] = ()  # the classes the networks are told (an embedding each); () = class-blind

    def class_index(self, names: list[str | None]) -> torch.Tensor | None:
        """Indices of ``names`` into ``classes``; None for a class-blind network."""
        if not self.classes:
            return None
        if any(n is None for n in names):
            raise ValueError("this placement network is class-conditioned: it needs each cut-out's class")
        bad = [n for n in names if n not in self.classes]
        if bad:
            raise KeyError(f"the placement network knows no class {bad[0]!r} (it knows {', '.join(self.classes)})")
        return torch.tensor([self.classes.index(n) for n in names])

    @property
    def grid(self) -> int:
        return self.canvas // 2

    def scales(self) -> torch.Tensor:
        return torch.exp(torch.linspace(math.log(self.scale_min), math.log(self.scale_max), self.n_scales))


def _block(i: int, o: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.GroupNorm(4, o), nn.ReLU())


def _with_coords(x: torch.Tensor) -> torch.Tensor:
    """``x`` with two channels more: each cell's centre x and y in [-1, 1] (the placement prior
    depends on the height; a conv net alone barely knows where it is)."""
    b, _, h, w = x.shape
    ys = (torch.arange(h, dtype=x.dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=x.dtype) + 0.5) / w * 2 - 1
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)])
    return torch.cat([x, grid.expand(b, 2, h, w)], 1)


def _class_code(embed: nn.Embedding | None, classes: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    if embed is None:
        return None
    if classes is None or classes.shape != (batch,):
        raise ValueError(f"a class-conditioned placement network needs one class index per example (batch {batch})")
    return embed(classes)


class PlacementNet(nn.Module):
    """(scene (B, 3, S, S), foreground (B, 4, S, S): RGB and mask[, class indices (B,) into
    ``shape.classes``]) -> (F_out (B, D, K, G, G), heatmap logits (B, K, G, G)); K scales, G = S / 2,
    all inputs in [-1, 1] (the mask in {0, 1}). With ``shape.classes``, the class's embedding is added
    to the foreground's pooled code."""

    def __init__(self, shape: NetShape = NetShape()):
        super().__init__()
        if shape.canvas % 8:
            raise ValueError(f"canvas must be a multiple of 8 (three stride-2 levels), got {shape.canvas}")
        self.shape = shape
        w, k, d = shape.width, shape.n_scales, shape.features
        self.bg1, self.bg2 = _block(3 + 2, w), _block(w, 2 * w, 2)
        self.bg3, self.bg4 = _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 2)
        self.fg = nn.Sequential(_block(4, w, 2), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), nn.AdaptiveAvgPool2d(1))
        self.fuse = _block(8 * w + 2, 4 * w)
        self.dec3 = _block(4 * w + 4 * w + 4 * w + 2, 2 * w)
        self.dec2 = _block(2 * w + 2 * w + 2, 2 * w)
        self.out = nn.Conv2d(2 * w, k * d, 1)
        self.head = nn.Linear(d, 1)
        self.embed = nn.Embedding(len(shape.classes), 4 * w) if shape.classes else None

    def forward(self, scene: torch.Tensor, fg: torch.Tensor, classes: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        b1 = self.bg1(_with_coords(scene))
        b2 = self.bg2(b1)
        b3 = self.bg3(b2)
        b4 = self.bg4(b3)
        f = self.fg(fg)  # (B, 4w, 1, 1)
        code = _class_code(self.embed, classes, len(scene))
        if code is not None:
            f = f + code[:, :, None, None]
        x = self.fuse(_with_coords(torch.cat([b4, f.expand_as(b4)], 1)))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.dec3(_with_coords(torch.cat([x, b3, f.expand(-1, -1, *b3.shape[-2:])], 1)))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.dec2(_with_coords(torch.cat([x, b2], 1)))
        b, _, g, _ = x.shape
        feats = self.out(x).reshape(b, self.shape.n_scales, self.shape.features, g, g).transpose(1, 2)
        logits = self.head(feats.permute(0, 2, 3, 4, 1)).squeeze(-1)  # (B, K, G, G)
        return feats, logits


class CompositeEncoder(nn.Module):
    """(composite (B, 3, S, S), pasted mask (B, 1, S, S)[, class indices (B,)]) -> (features (B, D),
    plausibility logit (B,)). With ``shape.classes``, the class's embedding is added to the features."""

    def __init__(self, shape: NetShape = NetShape()):
        super().__init__()
        self.shape = shape
        w, s = shape.width, shape.canvas // 8
        self.body = nn.Sequential(_block(4 + 2, w), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2),
                                  _block(4 * w, 4 * w, 2), nn.Flatten(), nn.Linear(4 * w * s * s, shape.features))
        self.classify = nn.Sequential(nn.ReLU(), nn.Linear(shape.features, 1))
        self.embed = nn.Embedding(len(shape.classes), shape.features) if shape.classes else None

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, classes: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.body(_with_coords(torch.cat([composite, mask], 1)))
        code = _class_code(self.embed, classes, len(composite))
        if code is not None:
            feats = feats + code
        return feats, self.classify(feats).squeeze(-1)


# -- reading the heatmap at placements ---------------------------------------------------------------

def scale_coordinate(side: torch.Tensor, shape: NetShape) -> torch.Tensor:
    """A box side as the continuous index of the heatmap's scale axis (0 .. n_scales - 1)."""
    lo, hi = math.log(shape.scale_min), math.log(shape.scale_max)
    return (torch.log(side) - lo) / (hi - lo) * (shape.n_scales - 1)


def sample_at(volume: torch.Tensor, placements: torch.Tensor, shape: NetShape) -> torch.Tensor:
    """Trilinear read of ``volume`` (B, C, K, G, G) at box placements (B, N, 3) -> (B, N, C); a
    placement outside the grid reads the border."""
    cx, cy, side = placements.unbind(-1)
    k = scale_coordinate(side, shape)
    z = (2 * k + 1) / shape.n_scales - 1  # align_corners=False: cell centres at (2i + 1) / n - 1
    grid = torch.stack([2 * cx - 1, 2 * cy - 1, z], -1)[:, :, None, None, :]  # (B, N, 1, 1, 3)
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, :, 0, 0].transpose(1, 2)


def soft_placement(logits: torch.Tensor, shape: NetShape, temperature: float) -> torch.Tensor:
    """The heatmap's expected placement (B, 3) under softmax(logits / temperature) over all cells:
    centre in image fractions, side as exp of the expected log side (differentiable)."""
    b, k, g, _ = logits.shape
    p = torch.softmax(logits.reshape(b, -1) / temperature, -1).reshape(b, k, g, g)
    centres = (torch.arange(g, dtype=logits.dtype) + 0.5) / g
    log_sides = torch.log(shape.scales().to(logits.dtype))
    cx = (p.sum((1, 2)) * centres).sum(-1)
    cy = (p.sum((1, 3)) * centres).sum(-1)
    side = torch.exp((p.sum((2, 3)) * log_sides).sum(-1))
    return torch.stack([cx, cy, side], -1)


def boxes(placements: torch.Tensor, aspect: torch.Tensor) -> torch.Tensor:
    """(..., 3) placements and (..., 2) cut-out (width, height) over its longer side -> (..., 4) boxes."""
    return torch.cat([placements[..., :2], placements[..., 2:3] * aspect], -1)


# -- the composite loss (eq. 4-7) -------------------------------------------------------------------

def spatial_terms(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-9) -> tuple[torch.Tensor, ...]:
    """Eq. 4's three terms for (..., 4) boxes, each in [0, 1] and 0 where ``pred == true``:
    ``1 - IoU``; the centre distance squared over the squared diagonal of the smallest box
    enclosing both (DIoU's normalisation, docs/placement.md); ``|arctan(w/h) - arctan(w'/h')|``
    over pi/2."""
    (px, py, pw, ph), (tx, ty, tw, th) = pred.unbind(-1), true.unbind(-1)
    ix = (torch.minimum(px + pw / 2, tx + tw / 2) - torch.maximum(px - pw / 2, tx - tw / 2)).clamp(min=0)
    iy = (torch.minimum(py + ph / 2, ty + th / 2) - torch.maximum(py - ph / 2, ty - th / 2)).clamp(min=0)
    inter = ix * iy
    iou = (inter / (pw * ph + tw * th - inter).clamp(min=eps)).clamp(0, 1)
    ex = torch.maximum(px + pw / 2, tx + tw / 2) - torch.minimum(px - pw / 2, tx - tw / 2)
    ey = torch.maximum(py + ph / 2, ty + th / 2) - torch.minimum(py - ph / 2, ty - th / 2)
    centre = ((px - tx) ** 2 + (py - ty) ** 2) / (ex ** 2 + ey ** 2).clamp(min=eps)
    aspect = (torch.atan(pw / ph) - torch.atan(tw / th)).abs() / (math.pi / 2)
    return 1 - iou, centre, aspect


def spatial_loss(pred: torch.Tensor, true: torch.Tensor, lambdas: tuple[float, float, float]) -> torch.Tensor:
    """Eq. 4: ``l_iou (1 - IoU) + l_center * centre + l_aspect * aspect``, averaged over boxes."""
    return sum(lam * term.mean() for lam, term in zip(lambdas, spatial_terms(pred, true)))


def semantic_loss(f_out: torch.Tensor, f_com: torch.Tensor) -> torch.Tensor:
    """Eq. 5 at the labelled placements: the mean of ``||F_out - F_com||^2 / 4`` over (..., D)
    features, each L2-normalised first (so the term lies in [0, 1])."""
    return ((F.normalize(f_out, dim=-1) - F.normalize(f_com, dim=-1)) ** 2).sum(-1).mean() / 4


def heatmap_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 6 at the labelled placements: the mean squared difference of scores and 0/1 labels."""
    return ((scores - targets) ** 2).mean()
