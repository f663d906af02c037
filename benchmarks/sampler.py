"""Benchmark: the toy generator's samplers, DDIM against DPM-Solver++ at fewer steps.

Each setting (``SAMPLER:STEPS``; default DDIM at 20 steps, today's default, and
DPMSolverMultistep, i.e. DPM-Solver++, at 20, 10 and 8) runs through the stage's own path
``dataset.attention_masks`` (sampling with attention capture, then the params' threshold rule).
Measured in one run, in this order:

1. mask IoU against the oracle segmenter (``models/segmenter_real``): the oracle's prediction on
   each generated image == the prompted class is the reference, IoU over the pixels the mask does
   not ignore, as the assess stage scores ``mask_iou_vs_oracle``; per class and the class mean,
   for every ``--seeds`` value of ``generate.seed`` (each a different plan: prompts, backgrounds,
   noise). Reported as mean and sd over the seeds, and each setting's paired difference from the
   first setting (same plans), against the first setting's seed sd and the sd of
   ``mask_iou_vs_oracle`` in ``metrics/baseline.json``. These figures do not depend on the load.
2. images per second: one plan (``--per-class`` prompts of every class at ``generate.seed``, cut
   into batches of ``generate.batch_size``), the settings interleaved round after round in
   balanced orders after one untimed warm-up round; median over the rounds, and each setting's
   speed-up over the first setting as the median of the per-round ratios.

Not part of the test suite: timings on a loaded machine mean nothing (the IoU figures do not depend
on the load). Run it on an idle one:

    PYTHONPATH=src python benchmarks/sampler.py                          # full run
    PYTHONPATH=src python benchmarks/sampler.py --quick                  # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attention_capture as ac  # noqa: E402  (the timing helpers: balanced orders, paired ratios)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("DDIM:20", "DPMSolverMultistep:20", "DPMSolverMultistep:10", "DPMSolverMultistep:8")
BASELINE_KEY = "metrics/generator_quality.json:mask_iou_vs_oracle"


def parse_setting(text: str) -> tuple[str, int]:
    """``"SAMPLER:STEPS"`` -> (sampler, steps); the sampler must be one ``generate.sampler`` accepts."""
    from freemask.diffusion.models import SCHEDULERS

    name, _, steps = text.partition(":")
    if name not in SCHEDULERS or not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"setting {text!r}: expected SAMPLER:STEPS with SAMPLER one of {', '.join(SCHEDULERS)}")
    return name, int(steps)


def with_setting(cfg, setting: str):
    name, steps = parse_setting(setting)
    return cfg.model_copy(update={"sampler": name, "steps": steps})


def object_plan(cfg, seed: int, per_class: int) -> list:
    """The generate stage's plan at ``generate.seed`` = ``seed`` with ``per_class`` prompts per class."""
    from freemask.generate.plan import plan_objects
    from freemask.labels import toy_labels

    return plan_objects(cfg.model_copy(update={"seed": seed, "per_class": per_class}), toy_labels())


def generate_plan(gen, plan: list, cfg, reference=None) -> list:
    """``attention_masks`` over ``plan`` batch by batch, as the stage runs it; with ``reference``
    (uint8 images, the batch -> bool references) the per-sample mask IoUs, else nothing."""
    import numpy as np

    from freemask.assess.generator import mask_ious
    from freemask.generate.dataset import attention_masks
    from freemask.labels import toy_labels
    from freemask.memory import release_free_memory

    ious = []
    for b in range(0, len(plan), cfg.batch_size):
        batch = plan[b:b + cfg.batch_size]
        images, masks = attention_masks(gen, batch, cfg, toy_labels())
        if reference is not None:
            ious.append(mask_ious(masks, reference(images, batch)))
        release_free_memory()
    return list(np.concatenate(ious)) if ious else []


def oracle_reference(oracle):
    """The assess stage's reference: the oracle's prediction == each sample's class."""
    import numpy as np

    from freemask.segmenters.mask2former import predict
    from freemask.world.spec import class_index

    def reference(images, batch):
        return np.stack([o == class_index(p.cls) for o, p in zip(predict(oracle, images), batch)])
    return reference


# --------------------------------------------------------------------------- 1. images per second

def measure_speed(gen, cfg, settings: list[str], per_class: int, repeats: int, warmup: bool = True) -> dict:
    plan = object_plan(cfg, cfg.seed, per_class)
    configs = {s: with_setting(cfg, s) for s in settings}

    def variant(c):
        return lambda: {"total": ac.timed(lambda: generate_plan(gen, plan, c))[0]}

    rounds = ac.run_interleaved({s: variant(c) for s, c in configs.items()}, repeats, warmup)
    ref = settings[0]
    out = {"images": len(plan), "batch_size": cfg.batch_size, "repeats": repeats, "settings": {}}
    for s in settings:
        seconds = [rd[s]["total"] for rd in rounds]
        ratio = ac.paired_ratio(rounds, ref, s, part="total")  # reference seconds / these seconds
        out["settings"][s] = {"images_per_s": len(plan) / ac.median(seconds), "seconds": seconds,
                              "speedup_vs_reference": ratio["paired_median_ratio"],
                              "speedup_per_round": ratio["per_round_ratios"]}
    return out


# --------------------------------------------------------------------------- 2. mask IoU vs the oracle

def sd(xs: list[float]) -> float:
    return float(statistics.stdev(xs)) if len(xs) > 1 else 0.0


def measure_iou(gen, reference, cfg, settings: list[str], seeds: list[int], per_class: int) -> dict:
    from freemask.metrics.segmentation import per_class_mean
    from freemask.world.spec import CLASSES

    runs: dict[str, dict[int, dict]] = {s: {} for s in settings}
    for seed in seeds:
        plan = object_plan(cfg, seed, per_class)
        for s in settings:
            t0 = time.perf_counter()
            ious = generate_plan(gen, plan, with_setting(cfg, s), reference)
            runs[s][seed] = {**per_class_mean(ious, [p.cls for p in plan], CLASSES),
                             "seconds": time.perf_counter() - t0}
            print(f"  seed {seed} {s}: mean IoU {runs[s][seed]['mean']:.4f}", file=sys.stderr)
    ref = settings[0]
    out = {"seeds": seeds, "per_class": per_class, "images_per_seed": per_class * len(CLASSES), "settings": {}}
    for s in settings:
        means = [runs[s][k]["mean"] for k in seeds]
        diffs = [runs[s][k]["mean"] - runs[ref][k]["mean"] for k in seeds]
        per_cls = {c: [runs[s][k]["per_class"][c] for k in seeds] for c in runs[s][seeds[0]]["per_class"]}
        out["settings"][s] = {
            "mean": statistics.fmean(means), "sd": sd(means), "per_seed": {str(k): runs[s][k] for k in seeds},
            "per_class": {c: {"mean": statistics.fmean(v), "sd": sd(v)} for c, v in per_cls.items()},
            "diff_vs_reference": {"mean": statistics.fmean(diffs), "sd": sd(diffs), "per_seed": diffs}}
    return out


def verdicts(iou: dict, baseline_sd: float | None) -> dict:
    """Per setting: does its mean IoU hold within the reference's seed sd (and the baseline's sd)?"""
    ref = next(iter(iou["settings"].values()))
    out = {}
    for s, v in iou["settings"].items():
        drop = ref["mean"] - v["mean"]
        out[s] = {"drop_vs_reference": drop, "within_reference_seed_sd": drop <= ref["sd"],
                  "within_baseline_sd": None if baseline_sd is None else drop <= baseline_sd}
    return out


# --------------------------------------------------------------------------- report

def markdown(res: dict) -> str:
    m, speed, iou, ver = res["machine"], res["speed"], res["iou"], res["verdict"]
    ref = next(iter(speed["settings"]))
    base = res["baseline_sd"]
    lines = [
        "# Sampler benchmark" + (" (QUICK smoke run: sizes too small to mean anything)" if res["quick"] else ""),
        "",
        f"Generator `{res['generator']}`, params `{res['params']}`, oracle `{res['oracle']}`. Machine: "
        f"{m['cpu_count']} CPUs ({m['cpu_model']}), torch {m['torch']} on {m['torch_threads']} thread(s), diffusers "
        f"{m['diffusers']}. Load average (1 min) at start {m['loadavg_at_start'][0]:.2f}, before the timing "
        f"(after the IoU) {m['loadavg_before_speed'][0]:.2f}, at end {m['loadavg_at_end'][0]:.2f}; `uptime` at start: "
        f"`{m['uptime_at_start']}`, before the timing: `{m['uptime_before_speed']}`. Total {res['seconds']:.0f} s.",
        "",
        f"Images/s: {speed['images']} images per round (batches of {speed['batch_size']}), {speed['repeats']} "
        f"interleaved rounds, median; speed-up = median of the per-round time ratios against `{ref}`. Mask IoU vs "
        f"the oracle: {iou['images_per_seed']} images per seed ({iou['per_class']} per class), generate.seed "
        f"{', '.join(map(str, iou['seeds']))}; mean ± sd over the seeds; the difference from `{ref}` is paired "
        f"(same plans). Holds: the mean is at most the reference's seed sd ({ver[ref]['reference_sd']:.4f}) "
        f"below the reference's" + (f"; baseline.json sd of mask_iou_vs_oracle {base:.4f}." if base else "."),
        "",
        "| setting | images / s | speed-up | mask IoU (mean ± sd) | diff vs reference (mean ± sd) | holds (seed sd) "
        "| holds (baseline sd) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, v in speed["settings"].items():
        i, d, w = iou["settings"][s], iou["settings"][s]["diff_vs_reference"], ver[s]
        fmt = {True: "yes", False: "NO", None: "-"}
        lines.append(f"| {s} | {v['images_per_s']:.2f} | {v['speedup_vs_reference']:.2f}x | {i['mean']:.4f} ± "
                     f"{i['sd']:.4f} | {d['mean']:+.4f} ± {d['sd']:.4f} | {fmt[w['within_reference_seed_sd']]} | "
                     f"{fmt[w['within_baseline_sd']]} |")
    classes = list(next(iter(iou["settings"].values()))["per_class"])
    lines += ["", "Per class (mean over the seeds):", "",
              "| setting | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for s, i in iou["settings"].items():
        lines.append(f"| {s} | " + " | ".join(f"{i['per_class'][c]['mean']:.3f}" for c in classes) + " |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def baseline_sd(path: Path) -> float | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text())["metrics"].get(BASELINE_KEY, {}).get("sd")


def run(args) -> dict:
    import subprocess

    import torch

    from freemask.diffusion.models import load_generator
    from freemask.params import load
    from freemask.segmenters.mask2former import load_segmenter

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = load(args.params).generate
    if args.batch:
        cfg = cfg.model_copy(update={"batch_size": args.batch})
    machine = ac.machine_info(args.threads)
    machine["uptime_at_start"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    res: dict = {"quick": args.quick, "generator": str(args.generator), "params": str(args.params),
                 "oracle": str(args.oracle), "machine": machine, "baseline_sd": baseline_sd(args.baseline)}
    gen = load_generator(args.generator)
    print(f"[1/2] mask IoU vs the oracle: seeds {args.seeds}, {args.iou_per_class} per class", file=sys.stderr)
    res["iou"] = measure_iou(gen, oracle_reference(load_segmenter(args.oracle)), cfg, args.settings, args.seeds,
                             args.iou_per_class)
    machine["loadavg_before_speed"] = list(os.getloadavg())
    machine["uptime_before_speed"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"[2/2] images per second: {args.per_class} per class, {args.repeats} rounds", file=sys.stderr)
    res["speed"] = measure_speed(gen, cfg, args.settings, args.per_class, args.repeats)
    res["verdict"] = verdicts(res["iou"], res["baseline_sd"])
    ref_sd = res["iou"]["settings"][args.settings[0]]["sd"]
    for v in res["verdict"].values():
        v["reference_sd"] = ref_sd
    machine["loadavg_at_end"] = list(os.getloadavg())
    res["seconds"] = time.perf_counter() - t0
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 per class, 2 seeds, 2 rounds, 6 and 5 steps")
    ap.add_argument("--settings", nargs="+", default=None, help=f"SAMPLER:STEPS, the first is the reference "
                                                                 f"(default {' '.join(SETTINGS)})")
    ap.add_argument("--per-class", type=int, default=12, help="prompts per class of the timed plan (default 12)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 8, --quick 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="generate.seed values (default 0 1 2 3)")
    ap.add_argument("--iou-per-class", type=int, default=None,
                    help="prompts per class per seed for the IoU (default 24; the stage makes 60; --quick 1)")
    ap.add_argument("--batch", type=int, default=None, help="images per call (default generate.batch_size)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--generator", type=Path, default=REPO / "models" / "generator")
    ap.add_argument("--oracle", type=Path, default=REPO / "models" / "segmenter_real")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml", help="the generate section is used")
    ap.add_argument("--baseline", type=Path, default=REPO / "metrics" / "baseline.json")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON result (default benchmarks/results/sampler.json, sampler.quick.json with --quick); "
                         "the markdown summary goes beside it")
    args = ap.parse_args(argv)
    quick = args.quick
    args.settings = args.settings or (["DDIM:6", "DPMSolverMultistep:6", "DPMSolverMultistep:5"] if quick
                                      else list(SETTINGS))
    args.per_class = 1 if quick else args.per_class
    args.repeats = args.repeats or (2 if quick else 8)
    args.seeds = args.seeds or ([0, 1] if quick else [0, 1, 2, 3])
    args.iou_per_class = args.iou_per_class or (1 if quick else 24)
    try:
        for s in args.settings:
            parse_setting(s)
    except ValueError as err:
        ap.error(str(err))
    for name in ("per_class", "repeats", "iou_per_class", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.batch is not None and args.batch < 1:
        ap.error("--batch must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.out or REPO / "benchmarks" / "results" / ("sampler.quick.json" if args.quick else "sampler.json")
    res = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
