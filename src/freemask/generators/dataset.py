"""The `generate` stage's work: single-object images with attention masks, and empty scenes.

The prompt plan is fixed by params alone (a per-sample seed for every prompt), batches are
cut from the plan in order, and every finished shard is written atomically; an interrupted
run resumes by skipping whole shards whose plan fingerprint matches.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import shards
from ..io import write_json, write_text
from ..masks.result import ObjectMasks
from ..params import Generate
from ..world.build import prompt
from ..world.spec import BACKGROUND_FREQ, BACKGROUNDS, CLASSES, COOCCURRENCE, class_index
from .attention import AttentionStore, token_positions
from .masking import masks_from_store, new_store
from .sampling import sample
from .toy import ToyGenerator


@dataclass(frozen=True)
class PlannedSample:
    key: str
    prompt: str
    cls: str | None  # None for an empty scene
    background: str
    seed: int


def _seed(*parts: int) -> int:
    return int(np.random.default_rng(list(parts)).integers(0, 2**31 - 1))


def plan_objects(cfg: Generate) -> list[PlannedSample]:
    """``per_class`` prompts per class, each on a background drawn from where the class occurs."""
    out = []
    for k, cls in enumerate(CLASSES):
        w = np.array([COOCCURRENCE[b].get(cls, 0.0) * BACKGROUND_FREQ[b] for b in BACKGROUNDS])
        for i in range(cfg.per_class):
            rng = np.random.default_rng([cfg.seed, 1, k, i])
            bg = BACKGROUNDS[int(rng.choice(len(BACKGROUNDS), p=w / w.sum()))]
            out.append(PlannedSample(f"{cls}_{i:05d}", prompt([cls], bg), cls, bg, _seed(cfg.seed, 2, k, i)))
    return out


def plan_scenes(cfg: Generate) -> list[PlannedSample]:
    return [PlannedSample(f"{bg}_{j:05d}", prompt([], bg), None, bg, _seed(cfg.seed, 3, b, j))
            for b, bg in enumerate(BACKGROUNDS) for j in range(cfg.scenes_per_background)]


def object_token_index(gen: ToyGenerator, plan: list[PlannedSample]) -> torch.Tensor:
    """(B, 1): the position of each prompt's class word (its last token if the word has several)."""
    idx = []
    for p in plan:
        pos = token_positions(gen.tokenizer, p.prompt, p.cls)
        idx.append(pos[0] if len(pos) == 1 else pos[-1])
    return torch.tensor(idx)[:, None]


def sample_objects(gen: ToyGenerator, plan: list[PlannedSample], cfg: Generate, store: AttentionStore) -> np.ndarray:
    """Images (B,R,R,3) uint8 of a batch of the plan, attention recorded into ``store`` as the stage does."""
    return sample(gen, [p.prompt for p in plan], [p.seed for p in plan], cfg.steps, cfg.guidance, store,
                  record_max_timestep=cfg.max_timestep, guidance_max_timestep=cfg.guidance_max_timestep)


def attention_masks(gen: ToyGenerator, plan: list[PlannedSample], cfg: Generate) -> tuple[np.ndarray, ObjectMasks]:
    """Generate a batch; return images (B,R,R,3) uint8 and their masks by ``cfg.threshold.rule``."""
    store = new_store(object_token_index(gen, plan), cfg)
    images = sample_objects(gen, plan, cfg, store)
    return images, masks_from_store(store, images.shape[1], cfg, [p.cls for p in plan])


def _object_records(plan, images, masks: ObjectMasks):
    labels = masks.labels([class_index(p.cls) for p in plan])
    for p, img, m, label in zip(plan, images, masks.maps, labels):
        yield p.key, {"image.png": img, "label.png": label, "attention.png": (m * 255 + 0.5).astype(np.uint8),
                      "meta.json": {"prompt": p.prompt, "class": p.cls, "background": p.background, "seed": p.seed}}


def _fingerprint(cfg: Generate, generator_dir: Path) -> str:
    h = hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode())
    for f in sorted(generator_dir.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(generator_dir).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _prepare(out: Path, fingerprint: str) -> None:
    stamp = out / "_fingerprint.txt"
    if out.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(stamp, fingerprint)


def _run(plan: list[PlannedSample], out: Path, cfg: Generate, desc: str, make_shard) -> None:
    size = cfg.shard_size
    chunks = [plan[i:i + size] for i in range(0, len(plan), size)]
    bar = tqdm(total=len(plan), desc=desc)
    for s, chunk in enumerate(chunks):
        path = out / shards.shard_name(s)
        if path.exists():
            bar.update(len(chunk))
            continue
        records = []
        for b in range(0, len(chunk), cfg.batch_size):
            records += list(make_shard(chunk[b:b + cfg.batch_size]))
            bar.update(len(chunk[b:b + cfg.batch_size]))
        shards.write_shard(path, records)
    bar.close()
    index = [p.__dict__ for p in plan]
    write_json(out / "index.json", index, indent=0)


def generate_dataset(cfg: Generate, generator_dir: str | Path, out_dir: str | Path) -> dict:
    """Write ``objects/`` (image, label, attention map) and ``scenes/`` (empty backgrounds) shards."""
    generator_dir, out = Path(generator_dir), Path(out_dir)
    gen = ToyGenerator.load(generator_dir)
    fp = _fingerprint(cfg, generator_dir)
    _prepare(out / "objects", fp)
    _prepare(out / "scenes", fp)

    def objects(batch):
        return _object_records(batch, *attention_masks(gen, batch, cfg))

    def scenes(batch):
        imgs = sample(gen, [p.prompt for p in batch], [p.seed for p in batch], cfg.steps, cfg.guidance,
                      guidance_max_timestep=cfg.guidance_max_timestep)
        return ((p.key, {"image.png": im, "meta.json": {"prompt": p.prompt, "background": p.background, "seed": p.seed}})
                for p, im in zip(batch, imgs))

    objs, scns = plan_objects(cfg), plan_scenes(cfg)
    _run(objs, out / "objects", cfg, "generate: objects", objects)
    if scns:
        _run(scns, out / "scenes", cfg, "generate: scenes", scenes)
    return {"objects": len(objs), "scenes": len(scns)}
