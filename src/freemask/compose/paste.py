"""Multi-object composition: cut generated objects out by their masks and paste them into scenes.

Stacking order decides the label: a newer object overwrites the label pixels it covers, so masks
stay consistent under occlusion. Pixels a mask rule left undecided (label 255, e.g. Dataset
Diffusion's uncertainty band) travel with their object and stay 255 where it is pasted.

Modes (``compose.mode``), all placing objects at random positions and sizes:
- ``random`` (the ablation 'w/o thesaurus, w/o placement'): any object into any scene;
- ``same_background``: an object joins only scenes of the background it was generated on (its
  prompt's "... in/on the {background}"), so the pairing of objects and scenes is the one the
  generate stage's plan chose;
- ``thesaurus``: an object of class o joins a scene of background b when the Adaptive Matching
  Thesaurus has R(o, b) above ``thesaurus.threshold``, whatever background it was generated on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..data import shards
from ..errors import DataError
from ..metrics.segmentation import IGNORE_INDEX
from ..params import Compose


@dataclass(frozen=True)
class Cutout:
    key: str
    rgb: np.ndarray  # (h, w, 3) uint8, the bounding box of the object and its undecided pixels
    mask: np.ndarray  # (h, w) bool, the object
    label: int
    ignore: np.ndarray  # (h, w) bool, pixels the mask rule left undecided (label 255), never in ``mask``
    background: str | None = None  # the background of the prompt the object was generated with


@dataclass(frozen=True)
class Scene:
    key: str
    background: str
    image: np.ndarray  # (H, W, 3) uint8


def cut_out(key: str, image: np.ndarray, label: np.ndarray, background: str | None = None) -> Cutout | None:
    """The crop around the object and its undecided (``IGNORE_INDEX``) pixels; None when no pixel
    is surely the object."""
    ignore = label == IGNORE_INDEX
    fg = (label > 0) & ~ignore
    if not fg.any():
        return None
    classes = np.unique(label[fg])
    if len(classes) != 1:
        raise ValueError(f"object sample {key!r} has labels {classes.tolist()}; one class per object expected")
    ys, xs = np.nonzero(fg | ignore)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Cutout(key, image[y0:y1, x0:x1].copy(), fg[y0:y1, x0:x1].copy(), int(classes[0]),
                  ignore[y0:y1, x0:x1].copy(), background)


def _resize_mask(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.array(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127


def paste(image: np.ndarray, label: np.ndarray, obj: Cutout, cx: float, cy: float, size: float) -> None:
    """Paste ``obj`` in place, its longer side ``size`` (fraction of the image), centred at (cx, cy).

    Parts falling outside the canvas are clipped. The object's pixels take its label; its undecided
    pixels are pasted too (they may be object) and take ``IGNORE_INDEX``, never the object's label.
    Either way the pasted pixels overwrite the labels they cover (occlusion).
    """
    H, W = label.shape
    h, w = obj.mask.shape
    scale = size * max(H, W) / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    rgb = np.array(Image.fromarray(obj.rgb).resize((nw, nh), Image.BILINEAR))
    m, ign = _resize_mask(obj.mask, (nw, nh)), _resize_mask(obj.ignore, (nw, nh))
    top, left = int(round(cy * H - nh / 2)), int(round(cx * W - nw / 2))
    ys, xs = slice(max(0, top), min(H, top + nh)), slice(max(0, left), min(W, left + nw))
    sub = (slice(ys.start - top, ys.stop - top), slice(xs.start - left, xs.stop - left))
    mm, ii = m[sub], ign[sub] & ~m[sub]
    covered = mm | ii
    image[ys, xs][covered] = rgb[sub][covered]
    label[ys, xs][mm] = obj.label
    label[ys, xs][ii] = IGNORE_INDEX


def _background(key: str, meta: dict, folder) -> str:
    if "background" not in meta:
        raise KeyError(f"sample {key!r} in {folder} has no 'background' in its meta.json")
    return meta["background"]


def load_cutouts(objects_dir) -> list[Cutout]:
    cuts = [cut_out(k, m["image.png"], m["label.png"], _background(k, m["meta.json"], objects_dir))
            for k, m in shards.read_shards(objects_dir)]
    return [c for c in cuts if c is not None]


def load_scenes(scenes_dir) -> list[Scene]:
    return [Scene(k, _background(k, m["meta.json"], scenes_dir), m["image.png"]) for k, m in shards.read_shards(scenes_dir)]


def compose_one(rng: np.random.Generator, scene: np.ndarray, pool: list[Cutout],
                cfg: Compose) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """1 to ``max_objects`` objects drawn uniformly from ``pool``, pasted in turn at random positions
    with a side drawn from [``min_size``, ``max_size``]."""
    image, label = scene.copy(), np.zeros(scene.shape[:2], np.uint8)
    used = []
    for _ in range(int(rng.integers(1, cfg.max_objects + 1))):
        obj = pool[int(rng.integers(len(pool)))]
        size = float(rng.uniform(cfg.min_size, cfg.max_size))
        cx, cy = rng.uniform(size / 2, 1 - size / 2, 2)
        paste(image, label, obj, float(cx), float(cy), size)
        used.append(obj.key)
    return image, label, used


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


def compose_dataset(cfg: Compose, objects_dir, scenes_dir, out_dir, allowed: dict[str, set[int]] | None = None) -> dict:
    """``n_images`` composites in shards; ``allowed``: see :func:`scene_pools`."""
    if cfg.min_size > cfg.max_size:
        raise ValueError(f"compose.min_size ({cfg.min_size}) is larger than compose.max_size ({cfg.max_size})")
    pool, all_scenes = load_cutouts(objects_dir), load_scenes(scenes_dir)
    if not pool:
        raise DataError(objects_dir, "no object with a non-empty mask (every generated mask is empty)")
    if not all_scenes:
        raise DataError(scenes_dir, "no scene")
    scenes, pools = scene_pools(cfg.mode, pool, all_scenes, allowed)
    size = cfg.shard_size
    n_shards = (cfg.n_images + size - 1) // size
    for s in tqdm(range(n_shards), desc="compose: shards"):
        records = []
        for i in range(s * size, min(cfg.n_images, (s + 1) * size)):
            rng = np.random.default_rng([cfg.seed, i])
            k = int(rng.integers(len(scenes)))
            image, label, used = compose_one(rng, scenes[k].image, pools[k], cfg)
            records.append((f"{i:07d}", {"image.png": image, "label.png": label,
                                         "meta.json": {"scene": scenes[k].key, "objects": used}}))
        shards.write_shard(f"{out_dir}/{shards.shard_name(s)}", records)
    return {"images": cfg.n_images, "mode": cfg.mode, "object_pool": len(pool), "scenes": len(scenes),
            "scenes_left_out": len(all_scenes) - len(scenes)}
