"""The round loop of Algorithm 1 with injectable steps, so it runs on fakes in tests and on the toy
world (or a real profile) in :mod:`freemask.active.rounds`.

Round 0 trains on the initial data D0. Round r >= 1 generates fresh samples (``generate(r)``; the
caller derives their seeds from r so no two rounds share a sample), scores each with the previous
round's model (:mod:`.select`), keeps the top ``retain`` share, adds it to the pool (the paper's
"retained and added to the final dataset", §3.3) and retrains on the pool, from the previous
weights when ``finetune`` (Algorithm 1 takes an initial model f_theta0 and trains f_theta_t round
after round) or from scratch. Algorithm 1 also generates a batch after its last training
(t = T), which nothing uses; the loop stops after the last retraining instead.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .select import scores, select_top


@dataclass(frozen=True)
class Samples:
    """Labelled samples: keys (unique), uint8 images (N,H,W,3), labels (N,H,W) (255 = ignore) and,
    for single-object samples, the class id each was generated for (``classes``; empty for D0)."""

    keys: list[str]
    images: np.ndarray
    labels: np.ndarray
    classes: list[int] = field(default_factory=list)

    def __post_init__(self):
        n = len(self.keys)
        if len(self.images) != n or len(self.labels) != n or (self.classes and len(self.classes) != n):
            raise ValueError(f"{n} keys, {len(self.images)} images, {len(self.labels)} labels, "
                             f"{len(self.classes)} classes: one of each per sample")
        if len(set(self.keys)) != n:
            raise ValueError("sample keys must be unique")

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, idx: list[int]) -> "Samples":
        return Samples([self.keys[i] for i in idx], self.images[idx], self.labels[idx],
                       [self.classes[i] for i in idx] if self.classes else [])

    def __add__(self, other: "Samples") -> "Samples":
        clash = set(self.keys) & set(other.keys)
        if clash:
            raise ValueError(f"samples already in the pool: {sorted(clash)[:5]}")
        if not len(other):
            return self
        if not len(self):
            return Samples(list(other.keys), other.images, other.labels, [])
        return Samples(self.keys + other.keys, np.concatenate([self.images, other.images]),
                       np.concatenate([self.labels, other.labels]), [])


Generate = Callable[[int], Samples]  # round -> fresh single-object samples (classes set)
Train = Callable[[Samples, int, Any], Any]  # (pool, round, model to start from or None) -> model
Predict = Callable[[Any, np.ndarray], np.ndarray]  # (model, images) -> label maps
Evaluate = Callable[[Any], float]  # model -> val mIoU
Judge = Callable[[int, Samples, np.ndarray, np.ndarray], dict]  # (round, fresh, predictions, scores) -> metrics


@dataclass
class Result:
    model: Any
    pool: Samples
    rounds: list[dict]  # per-round metrics (the Figure 8 curve)
    kept: dict[int, list[str]]  # round -> kept keys, best first


def _summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "min": None, "median": None, "max": None}
    return {"mean": round(float(values.mean()), 6), "min": round(float(values.min()), 6),
            "median": round(float(np.median(values)), 6), "max": round(float(values.max()), 6)}


def run(initial: Samples, generate: Generate, train: Train, predict: Predict, *, rounds: int, retain: float,
        finetune: bool, evaluate: Evaluate | None = None, judge: Judge | None = None, progress: bool = True,
        fresh_out: list | None = None) -> Result:
    """Algorithm 1 for ``rounds`` generate-score-retrain cycles after round 0 (see the module doc).
    ``judge`` adds its metrics of each round's fresh samples, their predictions and scores to the
    round's row (under ``judge``); ``fresh_out`` collects (round, fresh samples, scores, kept
    indices) of every round."""
    if rounds < 0:
        raise ValueError(f"active.rounds must be >= 0, got {rounds}")
    if not len(initial):
        raise ValueError("the initial data set D0 is empty")
    pool, kept_keys = initial, {}
    bar = tqdm(range(rounds + 1), desc="active learning", disable=not progress)
    model, history = None, []
    for r in bar:
        row: dict = {"round": r}
        if r > 0:
            fresh = generate(r)
            if not len(fresh) or len(fresh.classes) != len(fresh):
                raise ValueError(f"round {r}: the generator returned {len(fresh)} samples and "
                                 f"{len(fresh.classes)} class ids; fresh samples need one class each")
            preds = predict(model, fresh.images)
            s = scores(preds, fresh.labels, fresh.classes)
            idx = select_top(fresh.keys, s, retain)
            kept = fresh.take(idx)
            pool = pool + kept
            kept_keys[r] = list(kept.keys)
            row.update(generated=len(fresh), kept=len(kept), kept_share=round(len(kept) / len(fresh), 6),
                       score=_summary(s), kept_score=_summary(s[idx]),
                       threshold=round(float(s[idx[-1]]), 6) if idx else None)
            if judge is not None:
                row["judge"] = judge(r, fresh, preds, s)
            if fresh_out is not None:
                fresh_out.append((r, fresh, s, idx))
        model = train(pool, r, model if finetune else None)
        row["pool"] = len(pool)
        if evaluate is not None:
            row["val_mIoU"] = round(float(evaluate(model)), 6)
        history.append(row)
        bar.set_postfix(pool=len(pool), **({"val_mIoU": f"{row['val_mIoU']:.3f}"} if "val_mIoU" in row else {}))
    return Result(model, pool, history, kept_keys)
