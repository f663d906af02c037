"""Benchmark: application 2 of the Independence-Prior GAN (``freemask.masks.independence_cluster``):
instance appearances and masks learned from one rendered image of a dense ball cluster; the learned
masks scored against the renderer's true instance shape, and seconds per step.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/independence_cluster.py \
        --out benchmarks/results/independence_cluster_<date>.json [--set cluster_steps=3000 ...]

The figure goes next to the JSON (same name, .png).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from freemask.masks.independence_cluster import cluster_demo
from freemask.params import load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", nargs="*", default=[], help="independence.KEY=VALUE overrides")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    cfg = load(a.params).independence
    for kv in a.set:
        k, v = kv.split("=", 1)
        cfg = cfg.model_copy(update={k: type(getattr(cfg, k))(v)})
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    metrics = cluster_demo(cfg, str(a.out.with_suffix(".png")), progress=True)
    seconds = time.perf_counter() - t0
    out = {"params": cfg.model_dump(), "metrics": metrics, "seconds_total": round(seconds, 1),
           "seconds_per_step": round(seconds / cfg.cluster_steps, 4), "torch_threads": torch.get_num_threads()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out["metrics"], indent=1), seconds)


if __name__ == "__main__":
    main()
