"""Foreground Object Location (paper §3.2.2): where, and at what size, a cut-out goes into a scene.

:func:`propose` gives a box placement ``(cx, cy, side)`` -- the cut-out's bounding-box centre and
longer side, fractions of the image, what :func:`freemask.compose.paste.paste` takes -- by mode:

- ``learned``: a cell of the FOPA-style network's heatmap (``placement_net``), told the class when
  it was trained class-conditioned (``placement.class_conditioned``). A cell's score is the
  least heatmap value in its 3 x 3 x 3 neighbourhood (scale, y, x); the cell is drawn with
  probability proportional to it among the cells scoring at least ``min_score`` (or the best cell,
  ``selection=argmax``, or when none reaches ``min_score``);
- ``prior``: one of the class's placements as the world's renderer draws them (``render.place``),
  kept at training time: the class-conditional statistics, blind to the scene and the cut-out;
- ``random``: a side uniform in [min_size, max_size] and a centre uniform where the box fits, as
  ``compose`` places objects without placement (the ablation).

A placement whose box overlaps an already placed box by an IoU above ``max_overlap`` is never
returned: learned mode leaves such cells out, the others draw again up to ``max_tries`` times.
``None`` means no placement satisfies the bound.

The judge of a placement is the world's own prior: :func:`freemask.world.placement.plausible_box`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import minimum_filter
from safetensors.torch import save_file

from ..errors import DataError, reason, stage_hint
from ..io import load_safetensors, read_json, replace_dir
from ..params import PlacementParams
from ..world.placement import box_of_frame, plausible, plausible_box  # noqa: F401  (the judge, for callers of propose)
from ..world.render import place
from ..world.spec import CLASSES
from .paste import Cutout
from .placement_net import NetShape, PlacementNet

MODES = ("learned", "prior", "random")


# -- inputs ----------------------------------------------------------------------------------------

def scene_input(scenes: list[np.ndarray], canvas: int) -> torch.Tensor:
    """(H, W, 3) uint8 scenes -> (B, 3, canvas, canvas) in [-1, 1]."""
    out = [np.asarray(Image.fromarray(s).resize((canvas, canvas), Image.BILINEAR)) if s.shape[:2] != (canvas, canvas)
           else s for s in scenes]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def cutout_input(cutouts: list[Cutout], canvas: int) -> torch.Tensor:
    """Cut-outs -> (B, 4, canvas, canvas): the object's RGB in [-1, 1] (0 off the mask) and its mask,
    the longer side filling the canvas, centred."""
    out = np.zeros((len(cutouts), 4, canvas, canvas), np.float32)
    for i, c in enumerate(cutouts):
        h, w = c.mask.shape
        nh, nw = max(1, round(h * canvas / max(h, w))), max(1, round(w * canvas / max(h, w)))
        rgb = np.asarray(Image.fromarray(c.rgb).resize((nw, nh), Image.BILINEAR), np.float32) / 127.5 - 1.0
        m = np.asarray(Image.fromarray(c.mask.astype(np.uint8) * 255).resize((nw, nh), Image.BILINEAR), np.float32) / 255
        top, left = (canvas - nh) // 2, (canvas - nw) // 2
        out[i, :3, top:top + nh, left:left + nw] = (rgb * m[..., None]).transpose(2, 0, 1)
        out[i, 3, top:top + nh, left:left + nw] = m
    return torch.from_numpy(out)


def aspect(cutout: Cutout) -> tuple[float, float]:
    """The cut-out's (width, height) over its longer side."""
    h, w = cutout.mask.shape
    return w / max(h, w), h / max(h, w)


def box_of(cutout: Cutout, cx: float, cy: float, side: float) -> tuple[float, float, float, float]:
    """The (x0, y0, x1, y1) image-fraction box ``paste(..., cx, cy, side)`` covers with this cut-out."""
    aw, ah = aspect(cutout)
    return cx - side * aw / 2, cy - side * ah / 2, cx + side * aw / 2, cy + side * ah / 2


def iou(a: np.ndarray, b: tuple[float, float, float, float]) -> np.ndarray:
    """IoU of (..., 4) xyxy boxes ``a`` with one box ``b``."""
    ix = np.clip(np.minimum(a[..., 2], b[2]) - np.maximum(a[..., 0], b[0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[3]) - np.maximum(a[..., 1], b[1]), 0, None)
    inter = ix * iy
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / np.maximum(union, 1e-12)


# -- the model: network and class statistics -------------------------------------------------------

@dataclass(frozen=True)
class PlacementPrior:
    """Per class, (n, 3) box placements (cx, cy, side) drawn by the world's renderer."""

    placements: dict[str, np.ndarray]

    @classmethod
    def from_renderer(cls, seed: int, n: int) -> "PlacementPrior":
        out = {}
        for k, name in enumerate(CLASSES):
            rng = np.random.default_rng([seed, 7, k])
            out[name] = np.array([box_of_frame(name, o.cx, o.cy, o.size) for o in (place(rng, name) for _ in range(n))])
        return cls(out)

    def draw(self, rng: np.random.Generator, cls: str) -> tuple[float, float, float]:
        if cls not in self.placements:
            raise KeyError(f"no placement statistics for class {cls!r} (has {', '.join(self.placements)})")
        p = self.placements[cls]
        return tuple(float(v) for v in p[int(rng.integers(len(p)))])


@dataclass
class PlacementModel:
    net: PlacementNet
    prior: PlacementPrior

    def heatmap(self, scene: np.ndarray, cutout: Cutout, cls: str | None = None) -> np.ndarray:
        """(n_scales, grid, grid) scores in [0, 1] of box placements: scale k, centre ((j + .5) / grid,
        (i + .5) / grid) at [k, i, j]. A class-conditioned network needs the cut-out's class ``cls``."""
        c = self.net.shape.canvas
        with torch.no_grad():
            _, logits = self.net(scene_input([scene], c), cutout_input([cutout], c), self.net.shape.class_index([cls]))
        return torch.sigmoid(logits[0]).numpy()


def save_placement(model: PlacementModel, out_dir: str | Path) -> None:
    """``config.json``, ``weights.safetensors`` and ``prior.safetensors`` into ``out_dir``, replaced whole."""
    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(tmp / "weights.safetensors"))
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.prior.placements.items()},
                  str(tmp / "prior.safetensors"))
        (tmp / "config.json").write_text(json.dumps(asdict(model.net.shape), sort_keys=True, indent=2) + "\n")
    replace_dir(out_dir, write)


def load_placement(path: str | Path) -> PlacementModel:
    """The model :func:`save_placement` wrote; a missing or damaged part is a DataError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no placement model; train one with the `train_placement` stage")
    hint = stage_hint(path) or "re-make it with stages/train_placement.py"
    for part in ("config.json", "weights.safetensors", "prior.safetensors"):
        if not (path / part).is_file():
            raise DataError(path / part, "missing from the placement model folder", hint)
    config = read_json(path / "config.json", hint)
    if isinstance(config, dict) and isinstance(config.get("classes"), list):
        config["classes"] = tuple(config["classes"])
    try:
        net = PlacementNet(NetShape(**config))
    except (TypeError, ValueError) as err:
        raise DataError(path / "config.json", f"not a placement model config ({reason(err)})", hint) from None
    try:
        net.load_state_dict(load_safetensors(path / "weights.safetensors", hint))
    except RuntimeError as err:  # other keys or shapes than config.json's network has
        raise DataError(path / "weights.safetensors", f"does not fit config.json ({reason(err)})", hint) from None
    prior = load_safetensors(path / "prior.safetensors", hint)
    classes = list(net.shape.classes) or sorted(prior)
    bad = [k for k, v in prior.items() if v.ndim != 2 or v.shape[1] != 3 or not len(v)]
    if bad or not prior or set(prior) != set(classes):
        raise DataError(path / "prior.safetensors", f"not the (n, 3) placements of every class {classes}", hint)
    return PlacementModel(net.eval(), PlacementPrior({k: prior[k].numpy() for k in classes}))


# -- proposing -------------------------------------------------------------------------------------

def _fits(box: tuple[float, ...], placed: list[tuple[float, float, float, float]], max_overlap: float) -> bool:
    return all(iou(np.asarray(box), p) <= max_overlap for p in placed)


def _learned(model: PlacementModel, cls: str, scene: np.ndarray, cutout: Cutout, rng: np.random.Generator,
             placed: list, cfg: PlacementParams) -> tuple[float, float, float] | None:
    heat = model.heatmap(scene, cutout, cls)
    sides = model.net.shape.scales().numpy().astype(np.float64)
    centres = (np.arange(heat.shape[1]) + 0.5) / heat.shape[1]
    aw, ah = aspect(cutout)
    s, cy, cx = sides[:, None, None], centres[None, :, None], centres[None, None, :]
    cells = np.stack(np.broadcast_arrays(cx - s * aw / 2, cy - s * ah / 2, cx + s * aw / 2, cy + s * ah / 2), -1)
    allowed = np.ones(heat.shape, bool)
    for p in placed:
        allowed &= iou(cells, p) <= cfg.max_overlap
    if not allowed.any():
        return None
    # a cell counts by the least score around it: trained at interpolated placements, the heatmap
    # spreads each edge of the plausible region over about one cell (docs/placement.md)
    score = np.where(allowed, minimum_filter(heat, size=3, mode="nearest"), -1.0)
    pick = np.flatnonzero(score >= cfg.min_score) if cfg.selection == "sample" else np.empty(0, int)
    if len(pick):
        w = score.reshape(-1)[pick].astype(np.float64) + 1e-12
        idx = int(pick[rng.choice(len(pick), p=w / w.sum())])
    else:
        idx = int(np.argmax(score))
    ki, yi, xi = np.unravel_index(idx, heat.shape)
    return float(centres[xi]), float(centres[yi]), float(sides[ki])


def propose(mode: str, cls: str, scene: np.ndarray, cutout: Cutout, rng: np.random.Generator,
            placed_boxes: list[tuple[float, float, float, float]] = (), *, model: PlacementModel | None = None,
            cfg: PlacementParams | None = None, min_size: float = 0.15, max_size: float = 0.4
            ) -> tuple[float, float, float] | None:
    """A box placement ``(cx, cy, side)`` for ``cutout`` (of class ``cls``) in ``scene`` by ``mode``,
    overlapping no box of ``placed_boxes`` (xyxy, image fractions; see :func:`box_of`) by an IoU above
    ``cfg.max_overlap``; None when none does. ``cfg``: the ``placement`` params (default: their
    defaults); ``model`` is needed by ``learned`` and ``prior``, ``min_size`` / ``max_size``
    (compose's) by ``random``."""
    cfg = PlacementParams() if cfg is None else cfg
    if mode not in MODES:
        raise ValueError(f"compose.placement must be one of {', '.join(MODES)}, got {mode!r}")
    placed = list(placed_boxes)
    if mode != "random" and model is None:
        raise ValueError(f"compose.placement={mode} needs a trained placement model (the `train_placement` stage)")
    if mode == "learned":
        return _learned(model, cls, scene, cutout, rng, placed, cfg)
    for _ in range(cfg.max_tries):
        if mode == "prior":
            cx, cy, side = model.prior.draw(rng, cls)
        else:
            side = float(rng.uniform(min_size, max_size))
            cx, cy = (float(v) for v in rng.uniform(side / 2, 1 - side / 2, 2))
        if _fits(box_of(cutout, cx, cy, side), placed, cfg.max_overlap):
            return cx, cy, side
    return None
