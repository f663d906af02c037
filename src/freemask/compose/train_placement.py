"""Training and measuring the placement network on the toy world's renders.

Each example is a background-only scene and a single-object render's cut-out of one class (both of
backgrounds where the class occurs, as ``generate`` makes them), with ``positives`` placements the
renderer draws for the class (``render.place``) and ``negatives`` that break its prior
(``world.placement.implausible``: wrong height band, wrong size for the height, the other support,
off the image), all as box placements (``placement.source: renderer``, the toy world only).

With ``placement.source: generated`` (any profile) the examples come from the ``generate`` stage's
own output instead (:func:`harvest`): each generated single-object image gives its object's box, a
placement the text-to-image model itself chose for the class; an example is a generated
background-only scene of a background the class was generated on, a generated cut-out of the
class, positives drawn from the class's harvested placements, and negatives drawn where no
harvested placement of the class lies near (:func:`in_support`) or sticking out of the image. One
generated object of a class in ``val_every`` is held out of the statistics and the examples.

Training runs in two phases, as FOPA's:

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
from PIL import Image
from tqdm import tqdm

from ..data import shards
from ..errors import DataError
from ..params import ParamsError, PlacementParams
from ..world.placement import NEGATIVE_KINDS, box_of_frame, implausible, plausible_box
from ..world.render import apply_lighting, place, render_background, render_scene, single_object_layout
from ..world.spec import BACKGROUNDS, CLASSES, background_distribution
from .paste import Cutout, cut_out, paste
from .placement import (MODES, PlacementModel, PlacementPrior, box_of, cutout_input, propose, save_placement,
                        scene_input)
from .scenes import Scene, _background, load_scenes
from .placement_net import (CompositeEncoder, NetShape, PlacementNet, boxes, heatmap_loss, sample_at,
                            semantic_loss, soft_placement, spatial_loss)

KIND_TRAIN, KIND_VAL = 1, 2
_KIND_EVAL = 3


def net_shape(cfg: PlacementParams, classes: tuple[str, ...] = CLASSES) -> NetShape:
    return NetShape(canvas=cfg.canvas, width=cfg.width, features=cfg.features, scale_min=cfg.scale_min,
                    scale_max=cfg.scale_max, n_scales=cfg.n_scales,
                    classes=tuple(classes) if cfg.class_conditioned else ())


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


# -- examples from the generator's own images (placement.source: generated) -------------------------

@dataclass(frozen=True)
class Harvest:
    """The generated objects as cut-outs, each with the box placement it has in its own image, and
    the generated background-only scenes; ``val``: the objects held out."""

    cutouts: list[Cutout]
    placements: np.ndarray  # (n, 3) (cx, cy, side), fractions of the image
    classes: list[str]  # each cut-out's class name
    val: np.ndarray  # (n,) bool
    scenes: list[Scene]

    def of(self, cls: str, val: bool = False) -> np.ndarray:
        """Indices of the class's objects of the train (or val) part."""
        return np.flatnonzero((np.asarray(self.classes) == cls) & (self.val == val))


def harvest(objects_dir: str | Path, scenes_dir: str | Path, classes: tuple[str, ...], cfg: PlacementParams) -> Harvest:
    """The ``generate`` stage's objects and scenes; every ``cfg.val_every``-th object of a class (in
    shard order) is held out. A box side outside the heatmap's sides (``scale_min`` .. ``scale_max``)
    is clipped into them. A class with no generated object is a DataError naming it."""
    cuts, places, names = [], [], []
    for key, m in shards.read_shards(objects_dir):
        label, meta = m["label.png"], m["meta.json"]
        cut = cut_out(key, m["image.png"], label, _background(key, meta, objects_dir))
        if cut is None:
            continue
        if not 1 <= cut.label <= len(classes):
            raise DataError(objects_dir, f"sample {key!r} has label {cut.label}, outside the profile's {len(classes)} classes")
        ys, xs = np.nonzero(label > 0)
        h, w = label.shape
        side = float(np.clip(max(ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()) / max(h, w), cfg.scale_min, cfg.scale_max))
        cuts.append(cut)
        places.append(((xs.min() + xs.max() + 1) / 2 / w, (ys.min() + ys.max() + 1) / 2 / h, side))
        names.append(classes[cut.label - 1])
    missing = [c for c in classes if c not in names]
    if missing:
        raise DataError(objects_dir, f"no generated object of {', '.join(missing)} to harvest placements from")
    seen: dict[str, int] = {}
    val = np.zeros(len(cuts), bool)
    for i, c in enumerate(names):  # the class's val_every-th, 2 val_every-th, ... object: every class keeps some
        seen[c] = seen.get(c, 0) + 1
        val[i] = seen[c] % cfg.val_every == 0
    return Harvest(cuts, np.array(places, np.float64), names, val, load_scenes(scenes_dir))


def in_support(placements: np.ndarray, harvested: np.ndarray, cfg: PlacementParams) -> np.ndarray:
    """(n, 3) placements -> (n,) bool: some harvested placement of the class lies within
    ``support_height`` in centre height and a factor ``support_size`` in side (the centre's x is free,
    as the toy world's prior leaves it), and the box stays in the image by its centre."""
    dy = np.abs(placements[:, None, 1] - harvested[None, :, 1]) <= cfg.support_height
    ds = np.abs(np.log(placements[:, None, 2] / harvested[None, :, 2])) <= np.log(cfg.support_size)
    inside = (placements[:, :2] >= 0).all(1) & (placements[:, :2] <= 1).all(1)
    return (dy & ds).any(1) & inside


def _draw_negatives(rng: np.random.Generator, harvested: np.ndarray, n: int, cfg: PlacementParams) -> list:
    out = []
    while len(out) < n:  # half out of the class's support, half sticking out of the image
        side = float(np.exp(rng.uniform(np.log(cfg.scale_min), np.log(cfg.scale_max))))
        if len(out) % 2 == 0:
            p = np.array([[rng.uniform(side / 2, 1 - side / 2), rng.uniform(side / 2, 1 - side / 2), side]])
            if in_support(p, harvested, cfg)[0]:
                continue
        else:
            edge = rng.uniform(-side / 4, side / 4)  # the centre within a quarter side of an edge
            cx, cy = rng.uniform(0, 1, 2)
            if rng.random() < 0.5:
                cx = edge if rng.random() < 0.5 else 1 - edge
            else:
                cy = edge if rng.random() < 0.5 else 1 - edge
            p = np.array([[cx, cy, side]])
        out.append(tuple(p[0]))
    return out


def make_generated_example(h: Harvest, seed: int, kind: int, i: int, cfg: PlacementParams,
                           classes: tuple[str, ...]) -> Example:
    """Example ``i`` of a split from the harvest: class ``classes[i % n]``, a held-out cut-out for
    ``KIND_VAL``; positives are train-part placements of the class, so no example is told its own
    cut-out's box."""
    rng = np.random.default_rng([seed, kind, i])
    cls = classes[i % len(classes)]
    own = h.of(cls, val=kind == KIND_VAL)
    if not len(own):
        own = h.of(cls)
    cut = h.cutouts[int(own[rng.integers(len(own))])]
    backgrounds = {c.background for c, name in zip(h.cutouts, h.classes) if name == cls}
    pool = [s for s in h.scenes if s.background in backgrounds] or h.scenes
    scene = pool[int(rng.integers(len(pool)))].image
    if scene.shape[:2] != (cfg.canvas, cfg.canvas):
        scene = np.asarray(Image.fromarray(scene).resize((cfg.canvas, cfg.canvas), Image.BILINEAR))
    harvested = h.placements[h.of(cls)]
    pos = harvested[rng.choice(len(harvested), size=cfg.positives, replace=len(harvested) < cfg.positives)]
    neg = _draw_negatives(rng, harvested, cfg.negatives, cfg)
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))].astype(np.float32)
    return Example(cls, scene, cut, np.vstack([pos, np.array(neg)]), labels)


def generated_plausibility(model: PlacementModel, h: Harvest, cfg: PlacementParams, classes: tuple[str, ...],
                           per_class: int, min_size: float, max_size: float, modes=MODES) -> dict:
    """Per mode, the share of placements of held-out cut-outs into generated scenes that lie in the
    class's harvested support (:func:`in_support`), overall and per class."""
    def props(mode: str) -> list[tuple[str, tuple | None]]:
        out = []
        for i in range(per_class * len(classes)):
            ex = make_generated_example(h, cfg.seed, KIND_VAL, i, cfg, classes)
            out.append((ex.cls, propose(mode, ex.cls, ex.scene, ex.cutout, np.random.default_rng([cfg.seed, _KIND_EVAL, i]),
                                        model=model, cfg=cfg, min_size=min_size, max_size=max_size)))
        return out

    def judge(cls: str, p: tuple) -> bool:
        return in_support(np.array([p]), h.placements[h.of(cls)], cfg)[0]

    return {mode: plausibility(props(mode), judge=judge, classes=classes) for mode in modes}


def composite(ex: Example, placement) -> tuple[np.ndarray, np.ndarray]:
    """The scene with the cut-out pasted at ``placement``, and the pasted object's mask."""
    image, label = ex.scene.copy(), np.zeros(ex.scene.shape[:2], np.uint8)
    paste(image, label, ex.cutout, *(float(v) for v in placement))
    return image, label == ex.cutout.label


def _composite_batch(examples: list[Example], pairs, shape: NetShape
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    made = [composite(examples[i], examples[i].placements[j]) for i, j in pairs]
    images = torch.from_numpy(np.stack([m[0] for m in made])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    masks = torch.from_numpy(np.stack([m[1] for m in made])).float()[:, None]
    return images, masks, shape.class_index([examples[i].cls for i, _ in pairs])


def train_teacher(examples: list[Example], cfg: PlacementParams, progress: bool, classes: tuple[str, ...] = CLASSES
                  ) -> tuple[CompositeEncoder, float]:
    """The composite encoder, and its accuracy over the last 50 steps' batches."""
    torch.manual_seed(cfg.seed)
    shape = net_shape(cfg, classes)
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


def train_net(examples: list[Example], f_com: torch.Tensor, cfg: PlacementParams, progress: bool,
              classes: tuple[str, ...] = CLASSES) -> tuple[PlacementNet, dict[str, list[float]]]:
    """The placement network trained with eq. 7 (horizontal flips as augmentation); the loss terms of
    every step."""
    shape = net_shape(cfg, classes)
    torch.manual_seed(cfg.seed)
    net = PlacementNet(shape)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    scenes = scene_input([e.scene for e in examples], cfg.canvas)
    fgs = cutout_input([e.cutout for e in examples], cfg.canvas)
    places = torch.from_numpy(np.stack([e.placements for e in examples])).float()
    class_idx = shape.class_index([e.cls for e in examples])
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
        feats, logits = net(sc, fg, None if class_idx is None else class_idx[idx])
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


def plausibility(props: list[tuple[str, tuple | None]], tolerance: float = 0.0, judge=None,
                 classes: tuple[str, ...] = CLASSES) -> dict:
    """The share of placements ``judge(cls, placement)`` accepts (default: the world's prior, within
    ``tolerance``; a None counts as refused), overall and per class."""
    judge = judge or (lambda cls, p: plausible_box(cls, *p, tolerance))
    ok = {c: [] for c in classes}
    for cls, p in props:
        ok[cls].append(p is not None and bool(judge(cls, p)))
    return {"plausibility": round(float(np.mean([v for c in classes for v in ok[c]])), 4),
            "per_class": {c: round(float(np.mean(ok[c])), 4) for c in classes if ok[c]}}


def evaluate(model: PlacementModel, cfg: PlacementParams, seed: int, per_class: int, min_size: float,
             max_size: float, tolerance: float = 0.0, modes=MODES) -> dict:
    """Per mode, the :func:`plausibility` of one placement per val scene (:func:`proposals`)."""
    return {mode: plausibility(proposals(model, cfg, seed, per_class, min_size, max_size, mode), tolerance)
            for mode in modes}


def train_placement(cfg: PlacementParams, out_dir: str | Path, min_size: float = 0.15, max_size: float = 0.4,
                    progress: bool = True, classes: tuple[str, ...] = CLASSES,
                    generated: tuple[str | Path, str | Path] | None = None) -> dict:
    """Train on ``cfg.examples`` examples of ``cfg.source``, save the model to ``out_dir`` and return a
    summary (``min_size`` / ``max_size``: compose's, for ``random``). ``generated``: the ``generate``
    stage's objects and scenes folders, read under ``source: generated``. ``val``: every mode's
    plausibility judged by the world's own prior (toy classes only); ``val_support``: judged by the
    harvested support (``source: generated``)."""
    classes = tuple(classes)
    toy = classes == tuple(CLASSES)
    t0 = time.perf_counter()
    h = None
    if cfg.source == "renderer":
        if not toy:
            raise ParamsError("placement.source: the renderer draws the toy world's classes only; this profile's "
                              "classes differ, so use placement.source: generated")
        examples = [make_example(cfg.seed, KIND_TRAIN, i, cfg)
                    for i in tqdm(range(cfg.examples), desc="train_placement: examples", disable=not progress)]
        prior = PlacementPrior.from_renderer(cfg.seed, cfg.prior_samples)
    else:
        if generated is None:
            raise ValueError("placement.source: generated needs the generate stage's objects and scenes folders")
        h = harvest(*generated, classes, cfg)
        examples = [make_generated_example(h, cfg.seed, KIND_TRAIN, i, cfg, classes)
                    for i in tqdm(range(cfg.examples), desc="train_placement: examples", disable=not progress)]
        prior = PlacementPrior({c: h.placements[h.of(c)] for c in classes})
    t_data = time.perf_counter()
    teacher, teacher_acc = train_teacher(examples, cfg, progress, classes)
    f_com = teacher_features(teacher, examples)
    t_teacher = time.perf_counter()
    net, log = train_net(examples, f_com, cfg, progress, classes)
    t_net = time.perf_counter()
    model = PlacementModel(net, prior)
    save_placement(model, out_dir)
    last = lambda k: round(float(np.mean(log[k][-100:])), 5)  # noqa: E731
    out = {"source": cfg.source, "val_scenes": cfg.val_scenes * len(classes), "tolerance": cfg.tolerance,
           "teacher_accuracy_last_steps": round(teacher_acc, 4),
           "loss_first_steps": round(float(np.mean(log["total"][:20])), 5),
           "loss_last_steps": {k: last(k) for k in log},
           "seconds": {"data": round(t_data - t0, 1), "teacher": round(t_teacher - t_data, 1),
                       "network": round(t_net - t_teacher, 1)}}
    if toy:
        out["val"] = evaluate(model, cfg, cfg.seed, cfg.val_scenes, min_size, max_size, cfg.tolerance)
    if h is not None:
        out["harvested"] = {"objects": len(h.cutouts), "held_out": int(h.val.sum())}
        out["val_support"] = generated_plausibility(model, h, cfg, classes, cfg.val_scenes, min_size, max_size)
    return out
