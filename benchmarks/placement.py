"""Benchmark: placement plausibility on toy val scenes, for the learned, prior and random modes.

For each training seed, the placement network is trained with the ``placement`` section of
params.yaml (``placement.seed`` replaced by the seed; the stage's code path,
``train_placement``), then every mode proposes placements into ``--per-class`` val scenes per
class: background-only renders of backgrounds where the class occurs, each with a fresh cut-out of
the class from a single-object render. The val scenes are the same for every seed (``--val-seed``);
the seed changes the network, the prior's statistics and the proposals' draws.

Plausibility is the share of placements the world's own placement prior accepts
(``world.placement.plausible_box``: vertical range, size for the height, inside the image
sideways), at tolerance 0 and at ``--loose``. Two settings:

- one object per scene (the acceptance figure);
- ``--objects`` objects of the class one after the other under ``placement.max_overlap``: how the
  bound bears on plausibility, and how often no placement satisfies it (``none_share``).

Not part of the test suite (training takes minutes):

    PYTHONPATH=src python benchmarks/placement.py                         # seeds 0 1 2, 60 scenes per class
    PYTHONPATH=src python benchmarks/placement.py --seeds 0 --per-class 5 # smoke run

Goal (reported, never enforced): learned >= 0.9.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from freemask.compose.placement import MODES, load_placement
from freemask.compose.train_placement import plausibility, proposals, train_placement
from freemask.params import PlacementParams, load

GOAL = 0.9
VAL_SEED = 1000


def _spread(values: list[float]) -> dict:
    return {"per_seed": values, "mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def run(cfg: PlacementParams, seeds: list[int], per_class: int, out_dir: Path, objects: int = 3,
        loose: float = 0.02, min_size: float = 0.15, max_size: float = 0.4, val_seed: int = VAL_SEED) -> dict:
    """Train one model per seed under ``out_dir`` and measure every mode; the results as plain data."""
    per_seed = {m: {"one": [], "loose": [], "multi": [], "none": [], "per_class": []} for m in MODES}
    seconds = []
    for seed in seeds:
        c = cfg.model_copy(update={"seed": seed, "val_scenes": 1})
        t0 = time.perf_counter()
        train_placement(c, out_dir / f"seed{seed}", min_size, max_size, progress=False)
        seconds.append(round(time.perf_counter() - t0, 1))
        model = load_placement(out_dir / f"seed{seed}")
        for mode in MODES:
            one = proposals(model, c, val_seed, per_class, min_size, max_size, mode, draw_seed=seed)
            multi = proposals(model, c, val_seed, per_class, min_size, max_size, mode, objects=objects, draw_seed=seed)
            strict = plausibility(one)
            r = per_seed[mode]
            r["one"].append(strict["plausibility"])
            r["per_class"].append(strict["per_class"])
            r["loose"].append(plausibility(one, loose)["plausibility"])
            r["multi"].append(plausibility(multi)["plausibility"])
            r["none"].append(round(sum(p is None for _, p in multi) / len(multi), 4))
    modes = {}
    for mode, r in per_seed.items():
        classes = r["per_class"][0]
        modes[mode] = {**_spread(r["one"]), f"tolerance_{loose}": _spread(r["loose"]),
                       f"{objects}_per_scene": _spread(r["multi"]), f"{objects}_per_scene_none_share": _spread(r["none"]),
                       "per_class_mean": {k: round(statistics.fmean(pc[k] for pc in r["per_class"]), 4) for k in classes}}
    return {"seeds": seeds, "scenes_per_class": per_class, "val_seed": val_seed, "objects": objects,
            "compose_sizes": [min_size, max_size], "train_seconds": seconds, "params": cfg.model_dump(), "modes": modes}


def markdown(res: dict, loose: float) -> str:
    o = res["objects"]
    lines = [f"Placement plausibility, {res['scenes_per_class']} val scenes x 8 classes, seeds {res['seeds']} "
             f"(mean ± sd over seeds; goal learned >= {GOAL})", "",
             f"| mode | 1 per scene | 1 per scene, tolerance {loose} | {o} per scene | {o} per scene: none placed |",
             "|---|---|---|---|---|"]
    fmt = lambda d: f"{d['mean']:.3f}" + (f" ± {d['sd']:.3f}" if d["sd"] is not None else "")  # noqa: E731
    for mode, m in res["modes"].items():
        lines.append(f"| {mode} | {fmt(m)} | {fmt(m[f'tolerance_{loose}'])} | {fmt(m[f'{o}_per_scene'])} | "
                     f"{fmt(m[f'{o}_per_scene_none_share'])} |")
    lines += ["", "Per class (1 per scene, mean over seeds):", "",
              "| mode | " + " | ".join(res["modes"]["learned"]["per_class_mean"]) + " |",
              "|---|" + "---|" * len(res["modes"]["learned"]["per_class_mean"])]
    for mode, m in res["modes"].items():
        lines.append(f"| {mode} | " + " | ".join(f"{v:.3f}" for v in m["per_class_mean"].values()) + " |")
    lines += ["", f"Training seconds per seed: {res['train_seconds']}; machine: {res.get('machine')}, "
              f"{res.get('cpus')} CPUs, torch threads {res.get('threads')}, load average "
              f"{res.get('load_average_start')} at start, {res.get('load_average_end')} at end."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--loose", type=float, default=0.02, help="the second tolerance reported")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: placement.threads)")
    ap.add_argument("--out", type=Path, default=None, help="write the results here (JSON, and .md beside it)")
    args = ap.parse_args()
    p = load(args.params)
    threads = args.threads or p.placement.threads
    torch.set_num_threads(threads)
    start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        res = run(p.placement, args.seeds, args.per_class, Path(tmp), args.objects, args.loose,
                  p.compose.min_size, p.compose.max_size)
    res.update(cpus=os.cpu_count(), threads=threads, machine=platform.processor() or platform.machine(),
               torch=torch.__version__, load_average_start=start, load_average_end=os.getloadavg()[0])
    md = markdown(res, args.loose)
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
