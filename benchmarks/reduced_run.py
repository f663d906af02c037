"""A reduced run of attention_capture.py that fits a 20-minute window: capture overhead at 16 images
(2 rounds), peak RSS 10 vs 50 steps (16 images) and 100 vs 300 images. Prints one JSON line per section.
Run from the repository root: PYTHONPATH=src python benchmarks/reduced_run.py"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
import attention_capture as b
from freemask.generators.toy import ToyGenerator
from freemask.params import load
torch.set_num_threads(2)
gdir = Path(__file__).resolve().parents[1] / "models" / "generator"
cfg = load(Path(__file__).resolve().parents[1] / "params.yaml").generate.model_copy(update={"batch_size": 16})
gen = ToyGenerator.load(gdir)
t0 = time.time()
cap = b.measure_capture_overhead(gen, cfg, 16, 2)
print(json.dumps({"capture": {k: cap[k] for k in ("overhead_vs_plain_sdpa", "explicit_vs_sdpa", "max_pixel_diff_vs_plain_sdpa")},
                  "medians": {k: v.get("median_s_per_image") for k, v in cap["variants"].items()}, "secs": time.time() - t0}, default=str), flush=True)
base = b.peak_rss_subprocess({"kind": "load", "generator": str(gdir), "threads": 2})
steps = b.rss_comparison(gdir, b.dataset_cfg(cfg, 16, 10), b.dataset_cfg(cfg, 16, 50), 2, 1)
print(json.dumps({"load_mib": b.peak_mib(base), "steps_10_vs_50": {k: steps[k] for k in ("ratio_b_over_a",)} | {"a": steps["a"]["median_peak_mib"], "b": steps["b"]["median_peak_mib"]}, "secs": time.time() - t0}), flush=True)
imgs = b.rss_comparison(gdir, b.dataset_cfg(cfg, 100, cfg.steps), b.dataset_cfg(cfg, 300, cfg.steps), 2, 1)
print(json.dumps({"images_100_vs_300": {"ratio": imgs["ratio_b_over_a"], "a": imgs["a"]["median_peak_mib"], "b": imgs["b"]["median_peak_mib"]}, "secs": time.time() - t0}), flush=True)
