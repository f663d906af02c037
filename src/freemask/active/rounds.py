"""Algorithm 1 wired to a profile's generator: the generator of the ``generate`` stage (the toy
model or Stable Diffusion) makes the fresh samples, Mask2Former
(:func:`freemask.segmenters.mask2former.train_segmenter`) is trained and judges them.

Fresh samples are single-object samples made exactly as the ``generate`` stage makes them (its
prompt plan, sampler and mask rule), with ``generate.seed`` replaced by a seed derived from
(``active.seed``, round): every round draws new per-sample seeds and its keys carry the round
(``r01_bird_00000``). Single objects, not composites, because the pseudo-mask being judged is the
generator's attention mask (composites only paste these masks, so a bad one is removed at the
source, before it reaches any composite) and because S(x) is then the IoU of one class.

Every function takes the profile's :class:`freemask.labels.LabelSet` (with the background weights
the ``generate`` stage prompted with): its classes name the labels, plan the prompts and number
the label maps.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data import shards
from ..data.arrays import read_members
from ..errors import DataError, reason
from ..diffusion.models import Generator, load_generator
from ..generate.dataset import _fingerprint, attention_masks
from ..generate.plan import PlannedSample, plan_objects, sample_seed
from ..labels import LabelSet
from ..metrics.segmentation import confusion_matrix, summarize
from ..params import Active, Generate, Train
from ..segmenters.mask2former import load_segmenter, predict, train_segmenter
from .judge import auc, catch_rate, corrupt
from .loop import Result, Samples, _summary, run
from .select import scores

_ROUND_STREAM = 0xAC71  # keeps round seeds apart from other uses of sample_seed(active.seed, ...)
_JUDGE_STREAM = 0x1D6E  # the spoiling of a round's copy of the fresh masks


def round_seed(seed: int, round_: int) -> int:
    """``generate.seed`` of round ``round_``'s fresh samples."""
    return sample_seed(seed, _ROUND_STREAM, round_)


def plan_round(gen_cfg: Generate, active: Active, round_: int, labels: LabelSet) -> list[PlannedSample]:
    """The generate stage's object plan for ``active.per_class`` samples per class and the round's
    seed; keys prefixed with the round."""
    cfg = gen_cfg.model_copy(update={"seed": round_seed(active.seed, round_), "per_class": active.per_class})
    return [replace(p, key=f"r{round_:02d}_{p.key}") for p in plan_objects(cfg, labels)]


class FreshSamples:
    """``generate(round)`` for :func:`freemask.active.loop.run`. Refuses a round whose (prompt, seed)
    pairs repeat a sample made before (in an earlier round, or the initial plan passed as ``used``):
    the same prompt and seed would make the same image.

    With ``cache_dir`` (and the ``generator_dir`` the generator was loaded from), a round's samples
    are kept in ``cache_dir/<digest>.npz``, the digest covering the generator's files, the generate
    params and the round's plan; a run that needs the same round again (another retention α of a
    sweep: the fresh samples of a round do not depend on α) reads them instead of sampling."""

    def __init__(self, gen: Generator, gen_cfg: Generate, active: Active, labels: LabelSet,
                 used: list[PlannedSample] = (), cache_dir: str | Path | None = None,
                 generator_dir: str | Path | None = None):
        if cache_dir is not None and generator_dir is None:
            raise ValueError("a fresh-sample cache needs the generator directory (its digest keys the cache)")
        self.gen, self.gen_cfg, self.active, self.labels = gen, gen_cfg, active, labels
        self.used = {(p.prompt, p.seed) for p in used}
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        # the generate stage's stamp of its params and the generator's files
        self._fingerprint = None if generator_dir is None else _fingerprint(gen_cfg, Path(generator_dir))

    def _cache_file(self, plan: list[PlannedSample]) -> Path:
        key = json.dumps({"generate": self._fingerprint, "plan": [[p.key, p.prompt, p.cls, p.seed] for p in plan]})
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"

    def _make(self, plan: list[PlannedSample]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        bs = self.gen_cfg.batch_size
        for b in tqdm(range(0, len(plan), bs), desc=f"active: fresh samples ({len(plan)})", unit="batch"):
            batch = plan[b:b + bs]
            imgs, masks = attention_masks(self.gen, batch, self.gen_cfg, self.labels)
            images.append(imgs)
            labels.append(masks.labels([self.labels.index(p.cls) for p in batch]))
        return np.concatenate(images), np.concatenate(labels)

    def __call__(self, round_: int) -> Samples:
        plan = plan_round(self.gen_cfg, self.active, round_, self.labels)
        pairs = {(p.prompt, p.seed) for p in plan}
        if len(pairs) < len(plan) or pairs & self.used:
            raise ValueError(f"round {round_}: the seeds derived from active.seed={self.active.seed} repeat "
                             f"a sample already made; choose another active.seed")
        self.used |= pairs
        if self.cache_dir is None:
            images, labels = self._make(plan)
        else:
            f = self._cache_file(plan)
            if f.exists():
                images, labels = _read_cache(f)
            else:
                images, labels = self._make(plan)
                f.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as fh:
                    np.savez(fh, images=images, labels=labels)
                os.replace(tmp, f)
        return Samples([p.key for p in plan], images, labels, [self.labels.index(p.cls) for p in plan])


def _read_cache(f: Path) -> tuple[np.ndarray, np.ndarray]:
    """A round's cached samples (arrays only, never pickles); a damaged file is a DataError naming it."""
    try:
        with np.load(f) as z:
            return z["images"], z["labels"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:  # np.load on a damaged .npz
        raise DataError(f, f"damaged fresh-sample cache ({reason(err)})",
                        "delete it: the round's samples are made again") from None


class Trainer:
    """``train(pool, round, start)``: round 0 trains ``train.steps`` steps, later rounds
    ``active.round_steps`` at ``active.round_lr`` (``train.lr`` if None), each with a training seed
    derived from (train.seed, round); the model of round r is saved in ``work_dir/round_XX`` and
    loaded back (``start`` is such a model).

    ``initial_model``: a segmenter already trained on D0 (the ``train_synthetic`` stage's output),
    taken as round 0's model f_theta0 instead of training one again."""

    def __init__(self, train_cfg: Train, active: Active, labels: LabelSet, work_dir: str | Path,
                 progress: bool = True, initial_model: str | Path | None = None):
        self.train_cfg, self.active, self.work_dir, self.progress = train_cfg, active, Path(work_dir), progress
        self.names = list(labels.names)
        self.initial_model = None if initial_model is None else Path(initial_model)
        self.stats: dict[int, dict] = {}
        self._last = None
        self._last_dir: Path | None = None

    def __call__(self, pool: Samples, round_: int, start):
        if round_ == 0 and self.initial_model is not None:
            self.stats[0] = {"initial_model": str(self.initial_model)}
            self._last, self._last_dir = load_segmenter(self.initial_model), self.initial_model
            return self._last
        update = {"seed": sample_seed(self.train_cfg.seed, _ROUND_STREAM, round_)}
        if round_ > 0:
            update["steps"] = self.active.round_steps
            if self.active.round_lr is not None:
                update["lr"] = self.active.round_lr
        cfg = self.train_cfg.model_copy(update=update)
        out = self.work_dir / f"round_{round_:02d}"
        init = None
        if start is not None:
            if start is not self._last:
                raise ValueError(f"round {round_}: can only fine-tune from the model this trainer made last")
            init = self._last_dir
        self.stats[round_] = train_segmenter(cfg, pool.images, pool.labels, len(self.names), out, class_names=self.names,
                                             progress=self.progress, init_from=init)
        self._last, self._last_dir = load_segmenter(out), out
        return self._last


def val_miou(images: np.ndarray, labels: np.ndarray, names: list[str], batch_size: int = 32):
    """``evaluate(model)``: mIoU over ``names`` (background first) on a labelled val set."""
    def evaluate(model) -> float:
        pred = predict(model, images, batch_size)
        return summarize(confusion_matrix(pred, labels, len(names)), names)["mIoU"]
    return evaluate


def oracle_judge(oracle, active: Active, num_classes: int, batch_size: int = 32):
    """``judge`` for :func:`freemask.active.loop.run` (see :mod:`.judge`): a fresh sample's mask is
    bad when its IoU against the ``oracle`` segmenter's prediction, for its class, is below
    ``active.bad_below``; the catch rate spoils ``active.corrupt_share`` of a copy of the round's
    masks, drawn from (``active.seed``, round); a swapped class is one of the ``num_classes`` object
    classes."""
    def judge(round_: int, fresh: Samples, preds: np.ndarray, values: np.ndarray) -> dict:
        reference = scores(predict(oracle, fresh.images, batch_size), fresh.labels, fresh.classes)
        bad = reference < active.bad_below
        rng = np.random.default_rng([active.seed, round_, _JUDGE_STREAM])
        labels, claims, spoilt, how = corrupt(fresh.labels, fresh.classes, active.corrupt_share, num_classes, rng)
        value = auc(values, bad)
        return {"oracle_iou": _summary(reference), "oracle_iou_per_sample": [round(float(v), 6) for v in reference],
                "bad": int(bad.sum()), "auc": None if value is None else round(value, 6),
                "catch": catch_rate(scores(preds, labels, claims), fresh.keys, spoilt, how, active.retain)}
    return judge


def load_samples(*directories: str | Path, names: tuple[str, ...], prefix: str = "d0") -> Samples:
    """Shards' ``image.png``/``label.png`` samples (labels checked against ``names``), keys
    ``{prefix}_{folder}_{key}`` (unique across folders)."""
    m = read_members(directories, ("image.png", "label.png"), names)
    keys = [f"{prefix}_{d.name}_{key}" for d, key in m["key"]]
    return Samples(keys, np.stack(m["image.png"]), np.stack(m["label.png"]))


def run_filter(active: Active, gen_cfg: Generate, train_cfg: Train, labels: LabelSet, generator_dir: str | Path,
               initial: Samples, work_dir: str | Path, val: tuple[np.ndarray, np.ndarray] | None = None,
               used: list[PlannedSample] = (), progress: bool = True, initial_model: str | Path | None = None,
               cache_dir: str | Path | None = None, oracle_model: str | Path | None = None,
               fresh_out: list | None = None) -> tuple[Result, Trainer]:
    """Algorithm 1 on ``labels``' classes; models of every round under ``work_dir``. ``initial_model``: see
    :class:`Trainer`; ``cache_dir``: see :class:`FreshSamples`; ``oracle_model``: the segmenter whose
    predictions judge the filter (:func:`oracle_judge`); ``fresh_out``: see
    :func:`freemask.active.loop.run`."""
    gen = load_generator(generator_dir)
    trainer = Trainer(train_cfg, active, labels, work_dir, progress, initial_model=initial_model)
    fresh = FreshSamples(gen, gen_cfg, active, labels, used, cache_dir=cache_dir,
                         generator_dir=None if cache_dir is None else generator_dir)
    result = run(initial, fresh, trainer, lambda m, x: predict(m, x),
                 rounds=active.rounds, retain=active.retain, finetune=active.finetune,
                 evaluate=None if val is None else val_miou(*val, list(labels.names)), progress=progress, fresh_out=fresh_out,
                 judge=None if oracle_model is None else oracle_judge(load_segmenter(oracle_model), active,
                                                                          len(labels.classes)))
    return result, trainer


def _write_records(records: list[tuple[str, dict]], out_dir: str | Path, shard_size: int) -> None:
    """``records`` as the only shards of ``out_dir``, ``shard_size`` samples each, in order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.tar"):
        old.unlink()
    for s in range(0, len(records), shard_size):
        shards.write_shard(out / shards.shard_name(s // shard_size), records[s:s + shard_size])


def write_pool(pool: Samples, out_dir: str | Path, shard_size: int) -> None:
    """The final pool as shards (``image.png``, ``label.png``), in pool order."""
    _write_records([(k, {"image.png": pool.images[i], "label.png": pool.labels[i]}) for i, k in enumerate(pool.keys)],
                   out_dir, shard_size)


def write_fresh(fresh_rounds: list, rounds: list[dict], out_dir: str | Path, shard_size: int,
                names: tuple[str, ...]) -> None:
    """Every round's fresh samples (``fresh_out`` of :func:`freemask.active.loop.run`) as shards, each
    with its class, round, score, whether it was kept and, where the round was judged, its oracle IoU."""
    records = []
    for (r, fresh, values, kept), row in zip(fresh_rounds, rounds[1:]):
        oracle = row.get("judge", {}).get("oracle_iou_per_sample")
        kept = set(kept)
        for i, key in enumerate(fresh.keys):
            meta = {"class": names[fresh.classes[i]], "round": r, "score": round(float(values[i]), 6),
                    "kept": i in kept, **({"oracle_iou": oracle[i]} if oracle else {})}
            records.append((key, {"image.png": fresh.images[i], "label.png": fresh.labels[i], "meta.json": meta}))
    _write_records(records, out_dir, shard_size)
