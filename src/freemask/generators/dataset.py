"""The `generate` stage's work: single-object images with attention masks, and empty scenes.

The prompt plan is fixed by params alone (a per-sample seed for every prompt), batches are
cut from the plan in order, and every finished shard is written atomically; an interrupted
run resumes by skipping whole shards whose plan fingerprint matches. Under ``torchrun`` the
shards are split between the processes by rank; the bytes are the same as a single process's.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import shards
from ..distributed import Ranks, process_group
from ..io import write_json, write_text
from ..memory import limit_malloc_arenas, release_free_memory
from ..masks.result import ObjectMasks
from ..params import Generate
from ..world.build import prompt
from ..world.spec import BACKGROUNDS, CLASSES, background_distribution, class_index
from .attention import AttentionStore, token_positions
from .masking import check_fits, masks_from_store, new_store
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
        w = background_distribution(cls)
        for i in range(cfg.per_class):
            rng = np.random.default_rng([cfg.seed, 1, k, i])
            bg = BACKGROUNDS[int(rng.choice(len(BACKGROUNDS), p=w))]
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
                  record_max_timestep=cfg.max_timestep, guidance_max_timestep=cfg.guidance_max_timestep,
                  self_attention_steps=cfg.refine.self_attention_steps)


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


def _object_batch(gen: ToyGenerator, cfg: Generate, batch: list[PlannedSample]):
    return _object_records(batch, *attention_masks(gen, batch, cfg))


def _scene_batch(gen: ToyGenerator, cfg: Generate, batch: list[PlannedSample]):
    imgs = sample(gen, [p.prompt for p in batch], [p.seed for p in batch], cfg.steps, cfg.guidance,
                  guidance_max_timestep=cfg.guidance_max_timestep)
    return ((p.key, {"image.png": im, "meta.json": {"prompt": p.prompt, "background": p.background, "seed": p.seed}})
            for p, im in zip(batch, imgs))


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


def plan_shards(plan: list[PlannedSample], shard_size: int) -> list[list[PlannedSample]]:
    """The plan cut in order into shards of ``shard_size`` samples (the last may be shorter)."""
    return [plan[i:i + shard_size] for i in range(0, len(plan), shard_size)]


def _run(plan: list[PlannedSample], out: Path, cfg: Generate, desc: str, make_shard, ranks: Ranks) -> list[int]:
    """Write this rank's missing shards of ``plan`` into ``out``; return their indices."""
    chunks = plan_shards(plan, cfg.shard_size)
    mine = [s for s in range(len(chunks)) if ranks.owns(s)]
    todo = [s for s in mine if not (out / shards.shard_name(s)).exists()]
    if ranks.world_size > 1:
        desc = f"{desc} [rank {ranks.rank}/{ranks.world_size}]"
    bar = tqdm(total=sum(len(chunks[s]) for s in mine), desc=desc, disable=not mine)
    bar.update(sum(len(chunks[s]) for s in mine if s not in todo))
    for s in todo:
        chunk, records = chunks[s], []
        for b in range(0, len(chunk), cfg.batch_size):
            records += list(make_shard(chunk[b:b + cfg.batch_size]))
            release_free_memory()  # or the heap kept between batches grows with the run (freemask.memory)
            bar.update(len(chunk[b:b + cfg.batch_size]))
        shards.write_shard(out / shards.shard_name(s), records)
    bar.close()
    return todo


def _write_index(plan: list[PlannedSample], out: Path, cfg: Generate) -> None:
    """``index.json`` of a finished folder; every shard of the plan must be there by now."""
    n = len(plan_shards(plan, cfg.shard_size))
    missing = [shards.shard_name(s) for s in range(n) if not (out / shards.shard_name(s)).exists()]
    if missing:
        raise RuntimeError(f"{out}: {', '.join(missing)} missing after every rank finished its shards; "
                           f"no index written")
    write_json(out / "index.json", [p.__dict__ for p in plan], indent=0)


def generate_dataset(cfg: Generate, generator_dir: str | Path, out_dir: str | Path) -> dict:
    """Write ``objects/`` (image, label, attention map) and ``scenes/`` (empty backgrounds) shards.

    Under ``torchrun`` / ``accelerate launch`` shard ``s`` of each plan is made by rank
    ``s % world_size`` (see :mod:`freemask.distributed`); rank 0 alone prepares the folders and
    writes the indexes, the others wait for it. Returns the plan sizes, this process's rank and
    world size, and the shards it wrote (``written``: indices per folder).
    """
    generator_dir, out = Path(generator_dir), Path(out_dir)
    limit_malloc_arenas(1)  # before torch's worker threads take arenas of their own (freemask.memory)
    gen = ToyGenerator.load(generator_dir)
    check_fits(cfg, gen.unet)  # before _prepare clears the outputs of other params
    with process_group() as ranks:
        if ranks.is_main:
            fp = _fingerprint(cfg, generator_dir)
            _prepare(out / "objects", fp)
            _prepare(out / "scenes", fp)
        ranks.barrier()

        objs, scns = plan_objects(cfg), plan_scenes(cfg)
        make_objects, make_scenes = partial(_object_batch, gen, cfg), partial(_scene_batch, gen, cfg)
        written = {"objects": _run(objs, out / "objects", cfg, "generate: objects", make_objects, ranks),
                   "scenes": _run(scns, out / "scenes", cfg, "generate: scenes", make_scenes, ranks) if scns else []}
        ranks.barrier()
        if ranks.is_main:
            _write_index(objs, out / "objects", cfg)
            if scns:
                _write_index(scns, out / "scenes", cfg)
        ranks.barrier()
    return {"objects": len(objs), "scenes": len(scns), "rank": ranks.rank, "world_size": ranks.world_size,
            "written": written}
