"""Builds the toy world's outputs: generator training set, caption corpus, real VOC splits, priors.

Every sample has its own seed (``[world seed, kind, index]``), so outputs do not depend on
ordering or on how the work is split.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import shards, voc
from ..io import write_text
from ..params import World
from .captions import caption_corpus
from .render import render_scene, sample_layout, single_object_layout
from .spec import BACKGROUND_FREQ, BACKGROUNDS, CLASSES, COOCCURRENCE, PREPOSITION, true_priors

_KIND_GEN, _KIND_TRAIN, _KIND_VAL = 1, 2, 3
JPEG_QUALITY = 95  # how the real splits' images are stored (JPEGImages/, as VOC)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def prompt(classes: list[str], bg: str) -> str:
    """The generator's prompt template: 'a photo of a {object} {in/on} the {background}'."""
    if not classes:
        return f"a photo of the {bg}"
    objs = " and ".join(f"a {c}" for c in classes)
    return f"a photo of {objs} {PREPOSITION[bg]} the {bg}"


def _plausible_background(rng: np.random.Generator, cls: str) -> str:
    w = np.array([COOCCURRENCE[b].get(cls, 0.0) * BACKGROUND_FREQ[b] for b in BACKGROUNDS])
    return BACKGROUNDS[int(rng.choice(len(BACKGROUNDS), p=w / w.sum()))]


def generator_sample(cfg: World, i: int) -> dict:
    """One training pair for the text-to-image generator (single object, background only, or two objects)."""
    rng = np.random.default_rng([cfg.seed, _KIND_GEN, i])
    R = cfg.resolution
    r = rng.uniform()
    if r < cfg.generator_background_only_share:
        bg, objects = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], []
    elif r < cfg.generator_background_only_share + cfg.generator_multi_object_share:
        bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        objects = sample_layout(rng, bg, 2)
    else:
        cls = CLASSES[i % len(CLASSES)]
        implausible = rng.uniform() < cfg.generator_implausible_share
        bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))] if implausible else _plausible_background(rng, cls)
        objects = [single_object_layout(rng, cls)]
    img, label = render_scene(rng, bg, objects, R)
    return {
        "image.png": to_uint8(img),
        "label.png": label,
        "meta.json": {"caption": prompt([o.cls for o in objects], bg), "background": bg,
                      "classes": [o.cls for o in objects]},
    }


def real_scene(cfg: World, kind: int, i: int) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng([cfg.seed, kind, i])
    bgs = list(BACKGROUNDS)
    p = np.array([BACKGROUND_FREQ[b] for b in bgs])
    bg = bgs[int(rng.choice(len(bgs), p=p / p.sum()))]
    objects = sample_layout(rng, bg, int(rng.integers(1, cfg.max_objects + 1)))
    img, label = render_scene(rng, bg, objects, cfg.resolution)
    return to_uint8(img), label, {"background": bg, "classes": [o.cls for o in objects]}


def _write_generator_set(cfg: World, out: Path) -> None:
    n, size = cfg.generator_train_size, cfg.shard_size
    n_shards = (n + size - 1) // size
    for s in tqdm(range(n_shards), desc="world: generator set shards"):
        path = out / shards.shard_name(s)
        if path.exists():  # resumable: whole shards only (written atomically)
            continue
        idx = range(s * size, min(n, (s + 1) * size))
        shards.write_shard(path, ((f"{i:07d}", generator_sample(cfg, i)) for i in idx))


def val_scenes(cfg: World) -> tuple[np.ndarray, np.ndarray]:
    """The real val split as rendered, before the VOC writer stores it: images (N, H, W, 3) uint8
    and labels (N, H, W); ``cfg.seed`` picks the world."""
    scenes = [real_scene(cfg, _KIND_VAL, i)[:2] for i in range(cfg.real_val_size)]
    return np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])


def _write_voc(cfg: World, root: Path) -> None:
    for split, kind, n in (("train", _KIND_TRAIN, cfg.real_train_size), ("val", _KIND_VAL, cfg.real_val_size)):
        ids = []
        for i in tqdm(range(n), desc=f"world: real {split} split"):
            sid = f"toy_{split}_{i:06d}"
            img, label, _ = real_scene(cfg, kind, i)
            voc.write_sample(root, sid, img, label, JPEG_QUALITY)
            ids.append(sid)
        voc.write_split(root, split, ids)


def build_world(cfg: World, out_dir: str | Path) -> None:
    """Write everything the toy world provides under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "priors.json", json.dumps(true_priors(), indent=1, sort_keys=True) + "\n")
    write_text(out / "captions.txt", "\n".join(caption_corpus(cfg.seed, cfg.captions, cfg.max_objects)) + "\n")
    _write_generator_set(cfg, out / "generator_train")
    _write_voc(cfg, out / "voc")
