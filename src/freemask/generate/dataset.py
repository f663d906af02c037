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
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..attention.recorder import AttentionStore
from ..attention.tokens import WordTokens, word_tokens
from ..data import shards
from ..diffusion.models import Generator, load_generator, resolve_model
from ..diffusion.sampling import sample
from ..distributed import Ranks, process_group
from ..io import write_json, write_text
from ..labels import LabelSet
from ..masks.result import ObjectMasks
from ..masks.rules import check_fits, masks_from_store, new_store
from ..memory import limit_malloc_arenas, release_free_memory
from ..params import Generate
from .plan import PlannedSample, plan_objects, plan_scenes, plan_shards


def object_tokens(gen: Generator, plan: list[PlannedSample], labels: LabelSet) -> WordTokens:
    """The tokens of each prompt's object phrase (the class word, or the sub-class phrase its seed picks)."""
    return word_tokens(gen.tokenizer, [p.prompt for p in plan], [[labels.phrase(p.cls, p.seed)] for p in plan])


def sample_objects(gen: Generator, plan: list[PlannedSample], cfg: Generate, store: AttentionStore | None) -> np.ndarray:
    """Images (B, H, H, 3) uint8 of a batch of the plan, attention recorded into ``store`` as the stage does."""
    return sample(gen, [p.prompt for p in plan], [p.seed for p in plan], cfg.steps, cfg.guidance, store,
                  record_max_timestep=cfg.max_timestep, guidance_max_timestep=cfg.guidance_max_timestep,
                  self_attention_steps=cfg.refine.self_attention_steps, sampler=cfg.sampler, height=cfg.height)


def attention_masks(gen: Generator, plan: list[PlannedSample], cfg: Generate,
                    labels: LabelSet) -> tuple[np.ndarray, ObjectMasks]:
    """Generate a batch; return images (B, H, H, 3) uint8 and their masks by ``cfg.threshold.rule``:
    the one prompt -> image + mask path (the stage, ``freemask generate``, assess, active learning)."""
    tokens = object_tokens(gen, plan, labels)
    store = new_store(tokens, cfg)
    images = sample_objects(gen, plan, cfg, store)
    return images, masks_from_store(store, tokens, images.shape[1], cfg, [p.cls for p in plan])


def _object_records(plan, images, masks: ObjectMasks, labels: LabelSet):
    label_maps = masks.labels([labels.index(p.cls) for p in plan])
    for p, img, m, label in zip(plan, images, masks.maps, label_maps):
        yield p.key, {"image.png": img, "label.png": label, "attention.png": (m * 255 + 0.5).astype(np.uint8),
                      "meta.json": {"prompt": p.prompt, "class": p.cls, "background": p.background, "seed": p.seed}}


def _object_batch(gen: Generator, cfg: Generate, labels: LabelSet, batch: list[PlannedSample]):
    return _object_records(batch, *attention_masks(gen, batch, cfg, labels), labels)


def _scene_batch(gen: Generator, cfg: Generate, batch: list[PlannedSample]):
    imgs = sample_objects(gen, batch, cfg, None)
    return ((p.key, {"image.png": im, "meta.json": {"prompt": p.prompt, "background": p.background, "seed": p.seed}})
            for p, im in zip(batch, imgs))


def _fingerprint(cfg: Generate, generator_dir: Path, plans: list[list[PlannedSample]] = ()) -> str:
    """A digest of the params, the generator's files and the plans (prompts, backgrounds, seeds: they
    also depend on the profile and, under generate.backgrounds=thesaurus, on the thesaurus)."""
    h = hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode())
    for f in sorted(generator_dir.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(generator_dir).as_posix().encode())
            h.update(f.read_bytes())
    for plan in plans:
        h.update(json.dumps([p.__dict__ for p in plan]).encode())
    return h.hexdigest()


def _prepare(out: Path, fingerprint: str) -> None:
    stamp = out / "_fingerprint.txt"
    if out.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(stamp, fingerprint)


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


def generate_dataset(cfg: Generate, labels: LabelSet, out_dir: str | Path) -> dict:
    """Write ``objects/`` (image, label, attention map) and ``scenes/`` (empty backgrounds) shards,
    sampled from the generator in ``cfg.generator`` (the toy model or a Stable Diffusion checkpoint).

    Under ``torchrun`` / ``accelerate launch`` shard ``s`` of each plan is made by rank
    ``s % world_size`` (see :mod:`freemask.distributed`); rank 0 alone prepares the folders and
    writes the indexes, the others wait for it. Returns the plan sizes, this process's rank and
    world size, and the shards it wrote (``written``: indices per folder).
    """
    out = Path(out_dir)
    limit_malloc_arenas(1)  # before torch's worker threads take arenas of their own (freemask.memory)
    gen = load_generator(cfg.generator)
    generator_dir = resolve_model(cfg.generator) if gen.kind == "stable_diffusion" else Path(cfg.generator)
    check_fits(cfg, gen.unet, side=gen.latent_side(cfg.height))  # before _prepare clears the outputs of other params
    objs, scns = plan_objects(cfg, labels), plan_scenes(cfg, labels)
    with process_group() as ranks:
        if ranks.is_main:
            fp = _fingerprint(cfg, generator_dir, [objs, scns])
            _prepare(out / "objects", fp)
            _prepare(out / "scenes", fp)
        ranks.barrier()

        make_objects, make_scenes = partial(_object_batch, gen, cfg, labels), partial(_scene_batch, gen, cfg)
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
