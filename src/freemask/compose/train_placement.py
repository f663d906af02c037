"""Training and measuring the placement network on the toy world's renders.

Each example is a background-only scene and a single-object render's cut-out of one class (both of
backgrounds where the class occurs, as ``generate`` makes them), with ``positives`` placements the
renderer draws for the class (``render.place``) and ``negatives`` that break its prior
(``world.placement.implausible``: wrong height band, wrong size for the height, the other support,
off the image), all as box placements. Training runs in two phases, as FOPA's:

1. the teacher (:class:`CompositeEncoder`, FOPA's SOPA) learns to tell the composites of positive
   placements from those of negatives (binary cross-entropy); its features of every labelled
   composite are then computed once;
2. the placement network learns with eq. 7, ``l_spatial * L_spatial + l_semantic * L_semantic +
   l_heatmap * L_heatmap``: the heatmap read at the labelled placements against their labels, its
   features there against the teacher's, and its soft-argmax placement's box against the first
   positive's (docs/placement.md says where this reads the paper).

The same params and seed give the same weights (one process, the same thread count).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..params import PlacementParams
from ..world.placement import NEGATIVE_KINDS, box_of_frame, implausible, plausible_box
from ..world.render import apply_lighting, place, render_background, render_scene, single_object_layout
from ..world.spec import BACKGROUNDS, CLASSES, background_distribution
from .paste import Cutout, cut_out, paste
from .placement import (MODES, PlacementModel, PlacementPrior, box_of, cutout_input, propose, save_placement,
                        scene_input)
from .placement_net import (CompositeEncoder, NetShape, PlacementNet, boxes, heatmap_loss, sample_at,
                            semantic_loss, soft_placement, spatial_loss)

KIND_TRAIN, KIND_VAL = 1, 2
_KIND_EVAL = 3


def net_shape(cfg: PlacementParams) -> NetShape:
    return NetShape(canvas=cfg.canvas, width=cfg.width, features=cfg.features, scale_min=cfg.scale_min,
                    scale_max=cfg.scale_max, n_scales=cfg.n_scales,
                    classes=tuple(CLASSES) if cfg.class_conditioned else ())


@dataclass(frozen=True)
class Example:
    cls: str
    scene: np.ndarray  # (canvas, canvas, 3) uint8, background only
    cutout: Cutout
    placements: np.ndarray  # (positives + negatives, 3) box placements, the positives first
    labels: np.ndarray  # (positives + negatives,) 1.0 / 0.0


def _uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_example(seed: int, kind: int, i: int, cfg: PlacementParams) -> Example:
    """Example ``i`` of a split (``kind``); its class is ``CLASSES[i % 8]``."""
    rng = np.random.default_rng([seed, kind, i])
    cls, r = CLASSES[i % len(CLASSES)], cfg.canvas
    p_bg = background_distribution(cls)
    scene_bg, obj_bg = (BACKGROUNDS[int(rng.choice(len(BACKGROUNDS), p=p_bg))] for _ in range(2))
    scene = _uint8(apply_lighting(render_background(rng, scene_bg, r), scene_bg, rng))
    img, label = render_scene(rng, obj_bg, [single_object_layout(rng, cls)], r)
    cut = cut_out(f"{kind}-{i}", _uint8(img), label, obj_bg)
    pos = [box_of_frame(cls, o.cx, o.cy, o.size) for o in (place(rng, cls) for _ in range(cfg.positives))]
    neg, n = [], 0
    while len(neg) < cfg.negatives:  # only sides the heatmap has: one outside would read a border scale
        o = implausible(rng, cls, NEGATIVE_KINDS[n % len(NEGATIVE_KINDS)])
        n += 1
        b = box_of_frame(cls, o.cx, o.cy, o.size)
        if cfg.scale_min <= b[2] <= cfg.scale_max:
            neg.append(b)
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))].astype(np.float32)
    return Example(cls, scene, cut, np.array(pos + neg, np.float64), labels)


def composite(ex: Example, placement) -> tuple[np.ndarray, np.ndarray]:
    """The scene with the cut-out pasted at ``placement``, and the pasted object's mask."""
    image, label = ex.scene.copy(), np.zeros(ex.scene.shape[:2], np.uint8)
    paste(image, label, ex.cutout, *(float(v) for v in placement))
    return image, label == ex.cutout.label


def _class_index(shape: NetShape, examples: list[Example]) -> torch.Tensor | None:
    return torch.tensor([shape.classes.index(e.cls) for e in examples]) if shape.classes else None


def _composite_batch(examples: list[Example], pairs, shape: NetShape
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    made = [composite(examples[i], examples[i].placements[j]) for i, j in pairs]
    images = torch.from_numpy(np.stack([m[0] for m in made])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    masks = torch.from_numpy(np.stack([m[1] for m in made])).float()[:, None]
    return images, masks, _class_index(shape, [examples[i] for i, _ in pairs])


def train_teacher(examples: list[Example], cfg: PlacementParams, progress: bool) -> tuple[CompositeEncoder, float]:
    """The composite encoder, and its accuracy over the last 50 steps' batches."""
    torch.manual_seed(cfg.seed)
    shape = net_shape(cfg)
    teacher = CompositeEncoder(shape)
    opt = torch.optim.AdamW(teacher.parameters(), lr=cfg.lr)
    rng = np.random.default_rng([cfg.seed, 11])
    n_place, hits = len(examples[0].labels), []
    for _ in tqdm(range(cfg.teacher_steps), desc="train_placement: teacher", disable=not progress):
        idx = rng.choice(len(examples), size=min(2 * cfg.batch_size, len(examples)), replace=False)
        pairs = [(int(i), int(rng.integers(n_place))) for i in idx]
        y = torch.tensor([examples[i].labels[j] for i, j in pairs])
        _, logit = teacher(*_composite_batch(examples, pairs, shape))
        loss = F.binary_cross_entropy_with_logits(logit, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hits.append(float(((logit > 0).float() == y).float().mean()))
    return teacher.eval(), float(np.mean(hits[-50:]))


def teacher_features(teacher: CompositeEncoder, examples: list[Example], chunk: int = 512) -> torch.Tensor:
    """(examples, placements, features): the teacher's features of every labelled composite."""
    pairs = [(i, j) for i in range(len(examples)) for j in range(len(examples[i].labels))]
    out = []
    with torch.no_grad():
        for s in range(0, len(pairs), chunk):
            out.append(teacher(*_composite_batch(examples, pairs[s:s + chunk], teacher.shape))[0])
    return torch.cat(out).reshape(len(examples), len(examples[0].labels), -1)


def train_net(examples: list[Example], f_com: torch.Tensor, cfg: PlacementParams, progress: bool
              ) -> tuple[PlacementNet, dict[str, list[float]]]:
    """The placement network trained with eq. 7 (horizontal flips as augmentation); the loss terms of
    every step."""
    shape = net_shape(cfg)
    torch.manual_seed(cfg.seed)
    net = PlacementNet(shape)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    scenes = scene_input([e.scene for e in examples], cfg.canvas)
    fgs = cutout_input([e.cutout for e in examples], cfg.canvas)
    places = torch.from_numpy(np.stack([e.placements for e in examples])).float()
    classes = _class_index(shape, examples)
    labels = torch.from_numpy(np.stack([e.labels for e in examples]))
    aspects = torch.tensor([[m.shape[1] / max(m.shape), m.shape[0] / max(m.shape)]
                            for m in (e.cutout.mask for e in examples)])
    spatial_lambdas = (cfg.lambda_iou, cfg.lambda_center, cfg.lambda_aspect)
    rng = np.random.default_rng([cfg.seed, 12])
    log: dict[str, list[float]] = {k: [] for k in ("total", "spatial", "semantic", "heatmap")}
    for _ in tqdm(range(cfg.steps), desc="train_placement: network", disable=not progress):
        idx = torch.from_numpy(rng.choice(len(examples), size=min(cfg.batch_size, len(examples)), replace=False))
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        sc, fg, pl = scenes[idx], fgs[idx], places[idx].clone()
        sc = torch.where(flip[:, None, None, None], sc.flip(-1), sc)
        fg = torch.where(flip[:, None, None, None], fg.flip(-1), fg)
        pl[..., 0] = torch.where(flip[:, None], 1 - pl[..., 0], pl[..., 0])
        feats, logits = net(sc, fg, None if classes is None else classes[idx])
        scores = sample_at(torch.sigmoid(logits)[:, None], pl, shape)[..., 0]
        l_heat = heatmap_loss(scores, labels[idx])
        l_sem = semantic_loss(sample_at(feats, pl, shape), f_com[idx])
        a = aspects[idx]
        l_sp = spatial_loss(boxes(soft_placement(logits, shape, cfg.temperature), a), boxes(pl[:, 0], a), spatial_lambdas)
        loss = cfg.lambda_spatial * l_sp + cfg.lambda_semantic * l_sem + cfg.lambda_heatmap * l_heat
        opt.zero_grad()
        loss.backward()
        opt.step()
        for k, v in zip(log, (loss, l_sp, l_sem, l_heat)):
            log[k].append(float(v.detach()))
    return net.eval(), log


def proposals(model: PlacementModel, cfg: PlacementParams, seed: int, per_class: int, min_size: float,
              max_size: float, mode: str, objects: int = 1, draw_seed: int | None = None) -> list[tuple[str, tuple | None]]:
    """``objects`` placements, one after the other under the overlap bound, of a fresh cut-out of
    each class into each of ``per_class`` val scenes per class (background only, of backgrounds where
    the class occurs); (class, placement or None) in order. ``seed`` picks the scenes, ``draw_seed``
    (default ``seed``) the proposals' draws."""
    out = []
    for i in range(per_class * len(CLASSES)):
        ex = make_example(seed, KIND_VAL, i, cfg)
        rng = np.random.default_rng([seed if draw_seed is None else draw_seed, _KIND_EVAL, i])
        placed = []
        for _ in range(objects):
            p = propose(mode, ex.cls, ex.scene, ex.cutout, rng, placed, model=model, cfg=cfg,
                        min_size=min_size, max_size=max_size)
            out.append((ex.cls, p))
            if p is not None:
                placed.append(box_of(ex.cutout, *p))
    return out


def plausibility(props: list[tuple[str, tuple | None]], tolerance: float = 0.0) -> dict:
    """The share of placements the world's prior accepts (a None counts as refused), overall and per class."""
    ok = {c: [] for c in CLASSES}
    for cls, p in props:
        ok[cls].append(p is not None and plausible_box(cls, *p, tolerance))
    return {"plausibility": round(float(np.mean([v for c in CLASSES for v in ok[c]])), 4),
            "per_class": {c: round(float(np.mean(ok[c])), 4) for c in CLASSES if ok[c]}}


def evaluate(model: PlacementModel, cfg: PlacementParams, seed: int, per_class: int, min_size: float,
             max_size: float, tolerance: float = 0.0, modes=MODES) -> dict:
    """Per mode, the :func:`plausibility` of one placement per val scene (:func:`proposals`)."""
    return {mode: plausibility(proposals(model, cfg, seed, per_class, min_size, max_size, mode), tolerance)
            for mode in modes}


def train_placement(cfg: PlacementParams, out_dir: str | Path, min_size: float = 0.15, max_size: float = 0.4,
                    progress: bool = True) -> dict:
    """Train on ``cfg.examples`` examples, save the model to ``out_dir`` and return a summary with the
    val plausibility of every mode (``min_size`` / ``max_size``: compose's, for ``random``)."""
    t0 = time.perf_counter()
    examples = [make_example(cfg.seed, KIND_TRAIN, i, cfg)
                for i in tqdm(range(cfg.examples), desc="train_placement: examples", disable=not progress)]
    t_data = time.perf_counter()
    teacher, teacher_acc = train_teacher(examples, cfg, progress)
    f_com = teacher_features(teacher, examples)
    t_teacher = time.perf_counter()
    net, log = train_net(examples, f_com, cfg, progress)
    t_net = time.perf_counter()
    model = PlacementModel(net, PlacementPrior.from_renderer(cfg.seed, cfg.prior_samples))
    save_placement(model, out_dir)
    val = evaluate(model, cfg, cfg.seed, cfg.val_scenes, min_size, max_size, cfg.tolerance)
    last = lambda k: round(float(np.mean(log[k][-100:])), 5)  # noqa: E731
    return {"val": val, "val_scenes": cfg.val_scenes * len(CLASSES), "tolerance": cfg.tolerance,
            "teacher_accuracy_last_steps": round(teacher_acc, 4),
            "loss_first_steps": round(float(np.mean(log["total"][:20])), 5),
            "loss_last_steps": {k: last(k) for k in log},
            "seconds": {"data": round(t_data - t0, 1), "teacher": round(t_teacher - t_data, 1),
                        "network": round(t_net - t_teacher, 1)}}
