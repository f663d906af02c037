"""Multi-object scenes (paper §3.2): which generated objects join which generated scene, where and at
what size they go, how they are lit, and what the stacked result is labelled.

- **Which objects** (``compose.mode``): ``random`` (the ablation) lets any object into any scene;
  ``same_background`` only objects generated on the scene's background (the pairing the generate
  stage's plan chose); ``thesaurus`` an object of class o into scenes of background b when the
  Adaptive Matching Thesaurus has R(o, b) above ``thesaurus.threshold``.
- **How many**: k objects per scene, k drawn from ``compose.k_weights`` over 1..``max_objects``
  (uniform when null).
- **Where** (``compose.placement``): :func:`freemask.compose.placement.propose` in the scene as
  composed so far, no box overlapping an earlier one by more than ``compose.max_overlap`` IoU; an
  object with no such placement is skipped.
- **Lighting** (``compose.harmonize``): :func:`freemask.compose.harmonize.harmonize` of the pixels
  each object pasted, right after pasting it; ``statistics`` reads a light reference fitted on the
  object pool itself (:func:`light_reference`).
- **Labels**: stacking order (:func:`freemask.compose.paste.paste`). An object left with less than
  ``compose.min_visible`` of its area visible is dropped (the scene is composed again without it)
  or its visible pixels are labelled ignore (``compose.occluded``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import shards
from ..errors import DataError
from ..metrics.segmentation import IGNORE_INDEX
from ..params import Compose, Harmonize, PlacementParams
from .harmonize import (LightReference, fit_light, harmonize, load_harmonizer, log_rgb, reference_from_renders,
                        surround)
from .paste import Cutout, cut_out, paste
from .placement import PlacementModel, box_of, load_placement, propose
from .rain import RainNet


@dataclass(frozen=True)
class Scene:
    key: str
    background: str
    image: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class Layer:
    """An object as placed: its box centre and longer side, fractions of the image."""

    cutout: Cutout
    cx: float
    cy: float
    side: float


@dataclass(frozen=True)
class Tools:
    """What placement and harmonization need beyond the compose params: the ``placement`` params
    (selection, min_score, max_tries; the overlap bound is compose's), the placement model
    (``learned``, ``prior``), the harmonization network (``rain``) and the profile's class names
    (label k is ``classes[k - 1]``)."""

    classes: tuple[str, ...]
    placement: PlacementParams = PlacementParams()
    placement_model: PlacementModel | None = None
    harmonizer: RainNet | None = None
    ring: float = 0.25
    strength: float = 1.0
    light: LightReference | None = None


def _background(key: str, meta: dict, folder) -> str:
    if "background" not in meta:
        raise KeyError(f"sample {key!r} in {folder} has no 'background' in its meta.json")
    return meta["background"]


def load_cutouts(objects_dir, ring: float | None = None) -> list[Cutout]:
    """The objects of ``objects_dir``; with ``ring``, each with its :attr:`Cutout.surround` in its image."""
    cuts = []
    for k, m in shards.read_shards(objects_dir):
        cut = cut_out(k, m["image.png"], m["label.png"], _background(k, m["meta.json"], objects_dir))
        if cut is not None and ring is not None:
            ignore = m["label.png"] == IGNORE_INDEX
            cut = replace(cut, surround=surround(m["image.png"], (m["label.png"] > 0) & ~ignore, ring, ignore))
        cuts.append(cut)
    return [c for c in cuts if c is not None]


def light_reference(pool: list[Cutout], classes: tuple[str, ...]) -> LightReference:
    """:func:`freemask.compose.harmonize.fit_light` on the objects of ``pool`` that have a surround."""
    return fit_light((classes[c.label - 1], c.background, log_rgb(c.rgb[c.mask]).mean(0), c.surround)
                     for c in pool if c.surround is not None)


def load_scenes(scenes_dir) -> list[Scene]:
    return [Scene(k, _background(k, m["meta.json"], scenes_dir), m["image.png"]) for k, m in shards.read_shards(scenes_dir)]


def stack(scene: np.ndarray, layers: list[Layer], cfg: Compose, tools: Tools, background: str | None = None
          ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``layers`` pasted into ``scene`` (of ``background``) in order, each harmonized after it is pasted;
    the image, the label map and each layer's visible share (its pixels labelled as it at the end over
    its area)."""
    image, label = scene.copy(), np.zeros(scene.shape[:2], np.uint8)
    owner = np.full(label.shape, -1, np.int64)
    areas = []
    for i, layer in enumerate(layers):
        pasted, labelled, area = paste(image, label, layer.cutout, layer.cx, layer.cy, layer.side)
        owner[pasted] = -1
        owner[labelled] = i
        areas.append(area)
        if cfg.harmonize != "none" and pasted.any():
            source = (layer.cutout.background, layer.cutout.surround)
            image = harmonize(image, pasted, cfg.harmonize, tools.harmonizer, tools.light, source, background,
                              tools.ring, tools.strength)
    visible = [float(np.count_nonzero(owner == i)) / max(a, 1) for i, a in enumerate(areas)]
    if cfg.occluded == "ignore":
        for i, share in enumerate(visible):
            if share < cfg.min_visible:
                label[owner == i] = IGNORE_INDEX
    return image, label, visible


def compose_one(rng: np.random.Generator, scene: np.ndarray, pool: list[Cutout], cfg: Compose,
                tools: Tools, background: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """k objects drawn uniformly from ``pool`` and placed in turn in ``scene`` (of ``background``, which
    ``harmonize=statistics`` needs; see the module docstring); the image, its labels and what was
    placed (keys, boxes, visible shares, the keys dropped)."""
    if cfg.k_weights is None:
        k = int(rng.integers(1, cfg.max_objects + 1))
    else:
        w = np.asarray(cfg.k_weights, np.float64)
        k = 1 + int(rng.choice(len(w), p=w / w.sum()))
    placement = tools.placement.model_copy(update={"max_overlap": cfg.max_overlap})
    image, layers, boxes = scene, [], []
    for _ in range(k):
        obj = pool[int(rng.integers(len(pool)))]
        where = propose(cfg.placement, tools.classes[obj.label - 1], image, obj, rng, boxes,
                        model=tools.placement_model, cfg=placement, min_size=cfg.min_size, max_size=cfg.max_size)
        if where is None:
            continue
        layers.append(Layer(obj, *where))
        boxes.append(box_of(obj, *where))
        if cfg.placement == "learned":  # the next object is placed in the scene as composed so far
            image, _, _ = stack(scene, layers, cfg, tools, background)
    image, label, visible = stack(scene, layers, cfg, tools, background)
    dropped = []
    if cfg.occluded == "drop" and any(v < cfg.min_visible for v in visible):
        # removing an object only uncovers the others, so one pass leaves every kept one visible enough
        dropped = [lay.cutout.key for lay, v in zip(layers, visible) if v < cfg.min_visible]
        layers = [lay for lay, v in zip(layers, visible) if v >= cfg.min_visible]
        image, label, visible = stack(scene, layers, cfg, tools, background)
    meta = {"objects": [lay.cutout.key for lay in layers],
            "boxes": [[round(v, 4) for v in (lay.cx, lay.cy, lay.side)] for lay in layers],
            "visible": [round(v, 4) for v in visible], "dropped": dropped}
    return image, label, meta


def scene_pools(mode: str, pool: list[Cutout], scenes: list[Scene],
                allowed: dict[str, set[int]] | None = None) -> tuple[list[Scene], list[list[Cutout]]]:
    """The scenes objects can be pasted into and, for each, the objects that may join it by ``mode``;
    ``allowed`` (``thesaurus`` mode): background -> the labels of the classes that may join its
    scenes. A scene no object may join is left out."""
    if mode == "random":
        return scenes, [pool] * len(scenes)
    if mode == "same_background":
        pools = [[c for c in pool if c.background == s.background] for s in scenes]
    elif mode == "thesaurus":
        if allowed is None:
            raise ValueError("compose.mode=thesaurus needs the thesaurus's allowed classes per background")
        pools = [[c for c in pool if c.label in allowed.get(s.background, set())] for s in scenes]
    else:
        raise KeyError(f"compose.mode must be random, same_background or thesaurus, got {mode!r}")
    kept = [(s, p) for s, p in zip(scenes, pools) if p]
    if not kept:
        raise ValueError(f"compose.mode={mode}: no object may join any scene "
                         f"(scenes: {sorted({s.background for s in scenes})}, objects: {sorted({c.background for c in pool})})")
    return [s for s, _ in kept], [p for _, p in kept]


def load_tools(cfg: Compose, classes: list[str], placement: PlacementParams, placement_dir: str | Path,
               harmonizer_dir: str | Path, harmonization: Harmonize | None = None, resolution: int = 32) -> Tools:
    """The :class:`Tools` ``cfg`` needs: the placement model only for ``learned`` / ``prior``, the
    harmonization network only for ``rain``, and for ``statistics`` with ``harmonization.reference:
    renderer`` (``harmonization``, default params when None) the light reference of toy renders at
    ``resolution`` (with ``generated``, :func:`compose_dataset` fits it on the object pool)."""
    model = load_placement(placement_dir) if cfg.placement in ("learned", "prior") else None
    if model is not None:
        known = model.prior.placements if cfg.placement == "prior" else (model.net.shape.classes or classes)
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise DataError(placement_dir, f"knows no {', '.join(unknown)} (compose.placement={cfg.placement} needs "
                            f"every class of the profile)", "re-run the `train_placement` stage for this profile")
    net = load_harmonizer(harmonizer_dir) if cfg.harmonize == "rain" else None
    h = harmonization or Harmonize()
    light = None
    if cfg.harmonize == "statistics" and h.reference == "renderer":
        light = reference_from_renders(h.seed, h.reference_renders, resolution, h.ring)
    return Tools(tuple(classes), placement, model, net, h.ring, h.strength, light)


def compose_dataset(cfg: Compose, objects_dir, scenes_dir, out_dir, tools: Tools,
                    allowed: dict[str, set[int]] | None = None) -> dict:
    """``n_images`` composites in shards; ``allowed``: see :func:`scene_pools`. Sample i draws from
    its own generator, seeded ``[compose.seed, i]``."""
    statistics = cfg.harmonize == "statistics"
    pool, all_scenes = load_cutouts(objects_dir, tools.ring if statistics else None), load_scenes(scenes_dir)
    if not pool:
        raise DataError(objects_dir, "no object with a non-empty mask (every generated mask is empty)")
    light = {}
    if statistics:
        if tools.light is None:
            try:
                tools = replace(tools, light=light_reference(pool, tools.classes))
            except ValueError as err:
                raise DataError(objects_dir, str(err), hint="use compose.harmonize=rain or none") from None
        light = {"light_gain": {k: [round(float(v), 4) for v in np.exp(g)] for k, g in tools.light.light.items()}}
    if not all_scenes:
        raise DataError(scenes_dir, "no scene")
    scenes, pools = scene_pools(cfg.mode, pool, all_scenes, allowed)
    unlit = sorted({s.background for s in scenes} - set(tools.light.light)) if statistics else []
    if unlit:
        raise DataError(objects_dir, f"the light reference knows no {', '.join(unlit)} (harmonize.reference: "
                        "renderer knows the toy world's backgrounds, generated those objects were generated on), "
                        "so compose.harmonize=statistics cannot tell the light of its scenes",
                        hint="use harmonize.reference: generated, or compose.harmonize=rain or none")
    size = cfg.shard_size
    n_shards = (cfg.n_images + size - 1) // size
    placed = dropped = 0
    for s in tqdm(range(n_shards), desc="compose: shards"):
        records = []
        for i in range(s * size, min(cfg.n_images, (s + 1) * size)):
            rng = np.random.default_rng([cfg.seed, i])
            k = int(rng.integers(len(scenes)))
            image, label, meta = compose_one(rng, scenes[k].image, pools[k], cfg, tools, scenes[k].background)
            placed, dropped = placed + len(meta["objects"]), dropped + len(meta["dropped"])
            records.append((f"{i:07d}", {"image.png": image, "label.png": label,
                                         "meta.json": {"scene": scenes[k].key, **meta}}))
        shards.write_shard(f"{out_dir}/{shards.shard_name(s)}", records)
    return {"images": cfg.n_images, "mode": cfg.mode, "object_pool": len(pool), "scenes": len(scenes),
            "scenes_left_out": len(all_scenes) - len(scenes), "objects_placed": placed, "objects_dropped": dropped,
            **light}
