"""Benchmark: what attention capture costs in the `generate` stage (toy world).

Measured in one run, each as a comparison within that run:

1. capture overhead: ``sampling.sample(..., store=None)`` against the same call with an
   ``AttentionStore`` built the way ``dataset.attention_masks`` builds it, cross-attention only
   and cross + self-attention (the affinities the ``affinity`` threshold rule needs); plus plain
   generation with diffusers' explicit ``AttnProcessor`` against the default SDPA
   ``AttnProcessor2_0``, since the recorder computes attention explicitly. Variants run
   interleaved, round after round, in balanced orders (each variant runs right after each other one
   equally often: ``balanced_orders``), after one untimed warm-up round.
2. peak RSS flat: peak RSS of ``dataset.generate_dataset`` (the stage's per-image code path,
   shards written to a temporary folder) at two step counts and at two image counts, each in a
   fresh subprocess so no run's peak leaks into the next.
3. toy images per second through the stage's path (``dataset.attention_masks``: sampling with
   capture, then masks) without classifier-free guidance (1.0), with it at the params'
   ``guidance_max_timestep`` and with it at every step (3.0).

Not part of the test suite: timings on a loaded machine mean nothing. Run it on an idle one:

    PYTHONPATH=src python benchmarks/attention_capture.py            # full run
    PYTHONPATH=src python benchmarks/attention_capture.py --quick    # smoke run, 1-2 minutes
    PYTHONPATH=src python benchmarks/attention_capture.py --batch 16 --repeats 2 \
        --rss-images 100 300 --rss-steps-images 16 --rss-repeats 1        # reduced run, ~15 minutes

Goals (reported, never enforced): capture overhead <= 5 %, peak RSS flat within 5 %.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OVERHEAD_GOAL = 0.05
RSS_FLAT_GOAL = 0.05


@dataclass(frozen=True)
class Sizes:
    batch: int | None  # images per timed call; None: params' generate.batch_size
    steps: int | None  # denoising steps of the timed calls; None: params' generate.steps
    repeats: int  # timed rounds of interleaved variants (after one warm-up round)
    rss_steps: tuple[int, int]  # step counts compared for peak RSS
    rss_images: tuple[int, int]  # image counts compared for peak RSS (rounded up to whole per_class)
    rss_steps_images: int | None  # images of the step-count comparison; None: one batch
    rss_repeats: int  # fresh processes per config of each peak-RSS comparison


FULL = Sizes(batch=None, steps=None, repeats=8, rss_steps=(10, 50), rss_images=(100, 1000), rss_steps_images=None,
             rss_repeats=3)
QUICK = Sizes(batch=2, steps=3, repeats=2, rss_steps=(2, 4), rss_images=(8, 16), rss_steps_images=8, rss_repeats=2)


# --------------------------------------------------------------------------- helpers

def median(xs: list[float]) -> float:
    if not xs:
        raise ValueError("median of no measurements")
    return float(statistics.median(xs))


def benchmark_plan(cfg, n: int) -> list:
    """``n`` object samples of the stage's plan (same prompts and seeds), classes taken in turn (bird,
    aeroplane, ..., bird, ...) so that even a 2-image batch is not all one class (the stage's plan
    is class-major)."""
    from freemask.generate.plan import plan_objects
    from freemask.labels import toy_labels
    from freemask.world.spec import CLASSES

    per_class = math.ceil(n / len(CLASSES))
    plan = plan_objects(cfg.model_copy(update={"per_class": per_class}), toy_labels())
    by_class = [plan[k * per_class:(k + 1) * per_class] for k in range(len(CLASSES))]
    mixed = [by_class[k][i] for i in range(per_class) for k in range(len(CLASSES))]
    return mixed[:n]


def with_rule(cfg, rule: str):
    """``cfg`` with another threshold rule (``affinity`` needs self-attention, ``otsu`` does not)."""
    return cfg.model_copy(update={"threshold": cfg.threshold.model_copy(update={"rule": rule})})


@contextlib.contextmanager
def attention_processor(unet, processor) -> Iterator[None]:
    """Every attention layer of ``unet`` runs ``processor`` inside the context (None: leave as loaded)."""
    if processor is None:
        yield
        return
    previous = dict(unet.attn_processors)
    unet.set_attn_processor(processor)
    try:
        yield
    finally:
        unet.set_attn_processor(dict(previous))  # diffusers empties the dict it is given


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall seconds of ``fn()`` with Python's cyclic garbage collector off (as ``timeit`` does), and its result."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------- 1. capture overhead

PLAIN_SDPA, PLAIN_EXPLICIT = "plain_sdpa", "plain_explicit"
CAPTURE_CROSS, CAPTURE_CROSS_SELF = "capture_cross", "capture_cross_self"
GENERATION_VARIANTS = (PLAIN_SDPA, PLAIN_EXPLICIT, CAPTURE_CROSS, CAPTURE_CROSS_SELF)


def time_generation(gen, plan, cfg, variant: str) -> tuple[dict[str, float], "object"]:
    """One timed generation of ``plan`` by ``variant``; returns ({part: seconds}, uint8 images).

    ``plain_*``: ``sample(..., store=None)`` with the loaded processors (SDPA) or diffusers'
    explicit ``AttnProcessor`` on every layer. ``capture_*``: ``sample`` with a store built as
    ``masks.rules.new_store`` builds it for the ``otsu`` rule (cross-attention only) or the
    ``affinity`` rule (cross + self-attention at ``refine.resolution``), sampled by the generate
    stage's own ``dataset.sample_objects`` (cross-attention at timesteps <= ``max_timestep``,
    self-attention at the last ``refine.self_attention_steps`` of them); part ``sample`` is that call, part ``masks`` is
    ``masks.rules.masks_from_store`` (maps at the params' resolutions, then the rule's masks)."""
    from diffusers.models.attention_processor import AttnProcessor

    from freemask.diffusion.sampling import sample
    from freemask.generate.dataset import object_tokens, sample_objects
    from freemask.labels import toy_labels
    from freemask.masks.rules import masks_from_store, new_store

    prompts, seeds = [p.prompt for p in plan], [p.seed for p in plan]
    if variant in (PLAIN_SDPA, PLAIN_EXPLICIT):
        processor = AttnProcessor() if variant == PLAIN_EXPLICIT else None
        with attention_processor(gen.unet, processor):
            seconds, images = timed(lambda: sample(gen, prompts, seeds, cfg.steps, cfg.guidance,
                                                   guidance_max_timestep=cfg.guidance_max_timestep))
        return {"sample": seconds}, images
    if variant not in (CAPTURE_CROSS, CAPTURE_CROSS_SELF):
        raise KeyError(f"unknown generation variant {variant!r}; one of {', '.join(GENERATION_VARIANTS)}")
    vcfg = with_rule(cfg, "affinity" if variant == CAPTURE_CROSS_SELF else "otsu")
    tokens = object_tokens(gen, plan, toy_labels())
    store = new_store(tokens, vcfg)
    if (store.self_attention_resolution is not None) != (variant == CAPTURE_CROSS_SELF):
        raise RuntimeError(f"{variant}: new_store did not build the store this variant measures")
    seconds, images = timed(lambda: sample_objects(gen, plan, vcfg, store))
    mask_seconds, _ = timed(lambda: masks_from_store(store, tokens, images.shape[1], vcfg, [p.cls for p in plan]))
    return {"sample": seconds, "masks": mask_seconds}, images


def balanced_orders(n: int) -> list[list[int]]:
    """A Williams design: orders of ``n`` variants in which every variant runs in every position and
    right after every other variant equally often (``n`` orders for even ``n``, ``2n`` for odd). A
    cyclic rotation (A B C D, B C D A, ...) would keep the cyclic sequence, so one variant would
    always run right after the same other one, and whatever state it leaves behind (the allocator's
    heap, caches) would count against the variant after it, in every round."""
    if n < 1:
        raise ValueError(f"need at least one variant, got {n}")
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    orders = [[(v + shift) % n for v in first] for shift in range(n)]
    return orders + [o[::-1] for o in orders] if n % 2 else orders


def run_interleaved(variants: dict[str, Callable[[], dict[str, float]]], repeats: int,
                    warmup: bool = True) -> list[dict[str, dict[str, float]]]:
    """Rounds of every variant once, in the orders of ``balanced_orders`` taken in turn (for even
    counts a multiple of the number of variants completes the balance); with ``warmup`` a first,
    untimed round warms caches and allocators up. Garbage is collected before each round, outside
    the timed calls. Returns one {variant: {part: seconds}} per timed round."""
    names = list(variants)
    orders = balanced_orders(len(names))
    rounds = []
    for r in range(repeats + int(warmup)):
        order = [names[i] for i in orders[(r - int(warmup)) % len(orders)]]
        gc.collect()
        result = {name: variants[name]() for name in order}
        if warmup and r == 0:
            continue
        rounds.append({name: result[name] for name in names})
    return rounds


def summarize_rounds(rounds: list[dict[str, dict[str, float]]], images: int) -> dict[str, dict]:
    """Per variant and part: median seconds per image and every round's seconds per image."""
    out: dict[str, dict] = {}
    for name in rounds[0]:
        parts = {}
        for part in rounds[0][name]:
            per_image = [rd[name][part] / images for rd in rounds]
            parts[part] = {"median_s_per_image": median(per_image), "s_per_image": per_image}
        total = [sum(rd[name].values()) / images for rd in rounds]
        parts["total"] = {"median_s_per_image": median(total), "s_per_image": total}
        out[name] = parts
    return out


def paired_ratio(rounds, num: str, den: str, part: str = "sample") -> dict[str, float]:
    """``num`` against ``den``: the median of the per-round ratios (paired, robust to slow drift of
    the machine) and the ratio of the medians; ``overhead`` is the paired ratio minus 1."""
    def seconds(rd, name):
        return sum(rd[name].values()) if part == "total" else rd[name][part]

    per_round = [seconds(rd, num) / seconds(rd, den) for rd in rounds]
    ratio_of_medians = median([seconds(rd, num) for rd in rounds]) / median([seconds(rd, den) for rd in rounds])
    return {"paired_median_ratio": median(per_round), "ratio_of_medians": ratio_of_medians,
            "overhead": median(per_round) - 1.0, "per_round_ratios": per_round}


def measure_capture_overhead(gen, cfg, batch: int, repeats: int, warmup: bool = True) -> dict:
    """Section 1: the four generation variants on the same ``batch`` prompts and seeds, interleaved."""
    plan = benchmark_plan(cfg, batch)
    images: dict[str, object] = {}

    def variant(name):
        def run():
            parts, imgs = time_generation(gen, plan, cfg, name)
            images[name] = imgs
            return parts
        return run

    rounds = run_interleaved({name: variant(name) for name in GENERATION_VARIANTS}, repeats, warmup)
    ref = images[PLAIN_SDPA].astype(int)
    return {
        "images_per_call": batch, "steps": cfg.steps, "guidance": cfg.guidance,
        "guidance_max_timestep": cfg.guidance_max_timestep, "record_max_timestep": cfg.max_timestep,
        "map_resolutions": list(cfg.resolutions), "self_attention_resolution": cfg.refine.resolution,
        "self_attention_steps": cfg.refine.self_attention_steps, "repeats": repeats,
        "variants": summarize_rounds(rounds, batch),
        "overhead_vs_plain_sdpa": {
            "capture_cross": paired_ratio(rounds, CAPTURE_CROSS, PLAIN_SDPA),
            "capture_cross_self": paired_ratio(rounds, CAPTURE_CROSS_SELF, PLAIN_SDPA),
            "capture_cross_with_masks": paired_ratio(rounds, CAPTURE_CROSS, PLAIN_SDPA, part="total"),
            "capture_cross_self_with_masks": paired_ratio(rounds, CAPTURE_CROSS_SELF, PLAIN_SDPA, part="total"),
        },
        "explicit_vs_sdpa": paired_ratio(rounds, PLAIN_EXPLICIT, PLAIN_SDPA),
        # explicit attention and SDPA round differently; capture must not change the images beyond that
        "max_pixel_diff_vs_plain_sdpa": {name: int(abs(images[name].astype(int) - ref).max())
                                         for name in GENERATION_VARIANTS if name != PLAIN_SDPA},
        "goal_overhead": OVERHEAD_GOAL,
    }


# --------------------------------------------------------------------------- 2. peak RSS

def read_peak_rss_kb() -> dict[str, int]:
    """This process's peak resident set in KiB: ``VmHWM`` from /proc (the one compared) and ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if not status.exists():
        raise RuntimeError("peak RSS is read from /proc/self/status (VmHWM): Linux only")
    hwm = [int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:")]
    if len(hwm) != 1:
        raise RuntimeError("/proc/self/status has no VmHWM line")
    return {"vm_hwm_kb": hwm[0], "ru_maxrss_kb": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)}


def child_main(spec: dict) -> dict:
    """In a fresh process: set threads, run ``spec['kind']``, return the peak RSS.

    ``load``: load the generator only (the fixed cost every run pays). ``dataset``:
    ``generate_dataset`` with ``spec['cfg']`` into a temporary folder that is removed after."""
    import torch

    from freemask.diffusion.toy import ToyGenerator
    from freemask.generate.dataset import generate_dataset
    from freemask.labels import toy_labels
    from freemask.params import Generate

    torch.set_num_threads(int(spec["threads"]))
    t0 = time.perf_counter()
    kind = spec["kind"]
    result: dict = {"kind": kind}
    if kind == "load":
        ToyGenerator.load(spec["generator"])
    elif kind == "dataset":
        cfg = Generate.model_validate_json(json.dumps(spec["cfg"]))
        with tempfile.TemporaryDirectory(prefix="freemask-bench-") as tmp:
            done = generate_dataset(cfg.model_copy(update={"generator": str(spec["generator"])}), toy_labels(), tmp)
            result["counts"] = {k: done[k] for k in ("objects", "scenes")}
    else:
        raise KeyError(f"unknown child kind {kind!r} (load | dataset)")
    result["seconds"] = time.perf_counter() - t0
    result.update(read_peak_rss_kb())
    return result


def peak_rss_subprocess(spec: dict) -> dict:
    """Run ``child_main(spec)`` in a fresh Python process and return its result.

    The child's progress bars go to this process's stderr; its stdout carries the JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          stdout=subprocess.PIPE, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {spec['kind']!r} exited with {proc.returncode} (its stderr is above)")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"benchmark child {spec['kind']!r} printed no result")
    return json.loads(lines[-1])


def dataset_cfg(cfg, images: int, steps: int):
    """The stage's params with ``per_class`` giving at least ``images`` object images, no empty scenes."""
    from freemask.world.spec import CLASSES

    return cfg.model_copy(update={"per_class": math.ceil(images / len(CLASSES)), "steps": steps,
                                  "scenes_per_background": 0})


def peak_mib(run: dict) -> float:
    return run["vm_hwm_kb"] / 1024


def rss_comparison(generator_dir: Path, cfg_a, cfg_b, threads: int, repeats: int) -> dict:
    """Peak RSS of ``generate_dataset`` under two configs, each run in its own fresh process,
    ``repeats`` times interleaved (a b a b ...): identical runs differ by a few percent (allocator
    and thread timing), so one pair cannot tell "flat within 5 %". Compared by their medians; the
    spread ((max - min) / median) of each config shows the noise floor."""
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    for _ in range(repeats):
        for key, c in (("a", cfg_a), ("b", cfg_b)):
            runs[key].append(peak_rss_subprocess({"kind": "dataset", "generator": str(generator_dir),
                                                  "threads": threads, "cfg": c.model_dump()}))
    out: dict = {"repeats": repeats}
    for key, rs in runs.items():
        peaks = [peak_mib(r) for r in rs]
        out[key] = {"runs": rs, "objects": rs[0]["counts"]["objects"], "median_peak_mib": median(peaks),
                    "min_peak_mib": min(peaks), "max_peak_mib": max(peaks),
                    "spread": (max(peaks) - min(peaks)) / median(peaks), "median_seconds": median([r["seconds"] for r in rs])}
    ratio = out["b"]["median_peak_mib"] / out["a"]["median_peak_mib"]
    out["ratio_b_over_a"] = ratio
    out["flat_within_goal"] = abs(ratio - 1.0) <= RSS_FLAT_GOAL
    return out


def measure_peak_rss(generator_dir: Path, cfg, sizes: Sizes, threads: int) -> dict:
    """Section 2: step counts (one batch of images) and image counts (the stage's steps)."""
    s_lo, s_hi = sizes.rss_steps
    n_lo, n_hi = sizes.rss_images
    steps_images = sizes.rss_steps_images or cfg.batch_size
    baseline = peak_rss_subprocess({"kind": "load", "generator": str(generator_dir), "threads": threads})
    by_steps = rss_comparison(generator_dir, dataset_cfg(cfg, steps_images, s_lo),
                              dataset_cfg(cfg, steps_images, s_hi), threads, sizes.rss_repeats)
    by_images = rss_comparison(generator_dir, dataset_cfg(cfg, n_lo, cfg.steps),
                               dataset_cfg(cfg, n_hi, cfg.steps), threads, sizes.rss_repeats)
    return {"load_only": baseline, "steps": {"compared": [s_lo, s_hi], **by_steps},
            "images": {"compared": [n_lo, n_hi], "steps": cfg.steps, **by_images},
            "batch_size": cfg.batch_size, "shard_size": cfg.shard_size, "goal_flat": RSS_FLAT_GOAL}


# --------------------------------------------------------------------------- 3. images per second

def measure_throughput(gen, cfg, batch: int, repeats: int, warmup: bool = True) -> dict:
    """Section 3: images/s of ``dataset.attention_masks`` (the stage's per-batch work) at guidance 1.0
    (one UNet pass per step), 3.0 at the params' ``guidance_max_timestep`` and 3.0 at every step."""
    from freemask.generate.dataset import attention_masks
    from freemask.labels import toy_labels

    plan = benchmark_plan(cfg, batch)
    configs = {
        "guidance_1.0": cfg.model_copy(update={"guidance": 1.0}),
        "guidance_3.0": cfg.model_copy(update={"guidance": 3.0}),
        "guidance_3.0_every_step": cfg.model_copy(update={"guidance": 3.0, "guidance_max_timestep": 1000}),
    }

    def variant(c):
        return lambda: {"attention_masks": timed(lambda: attention_masks(gen, plan, c, toy_labels()))[0]}

    rounds = run_interleaved({name: variant(c) for name, c in configs.items()}, repeats, warmup)
    out = {"images_per_call": batch, "steps": cfg.steps, "repeats": repeats,
           "guidance_max_timestep": cfg.guidance_max_timestep, "threshold_rule": cfg.threshold.rule,
           "variants": {}}
    for name in configs:
        per_image = [rd[name]["attention_masks"] / batch for rd in rounds]
        out["variants"][name] = {"images_per_s": 1.0 / median(per_image), "median_s_per_image": median(per_image),
                                 "s_per_image": per_image}
    out["cfg_slowdown"] = {name: paired_ratio(rounds, name, "guidance_1.0", part="total")["paired_median_ratio"]
                           for name in configs if name != "guidance_1.0"}
    return out


# --------------------------------------------------------------------------- report

def machine_info(threads: int) -> dict:
    import diffusers
    import torch

    cpu_model = None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {"cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
            "torch_threads": threads, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_at_start": list(os.getloadavg())}


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def _range(ratio: dict) -> str:
    """The range of a paired ratio's per-round overheads: the noise a reader should read it with."""
    per = ratio["per_round_ratios"]
    return f"rounds {_pct(min(per) - 1.0)} to {_pct(max(per) - 1.0)}"


def markdown(res: dict) -> str:
    m, cap, rss, thr = res["machine"], res["capture"], res["peak_rss"], res["throughput"]
    lines = [
        "# Attention capture benchmark" + (" (QUICK smoke run: sizes too small to mean anything)" if res["quick"] else ""),
        "",
        f"Generator `{res['generator']}`, params `{res['params']}`. Machine: {m['cpu_count']} CPUs "
        f"({m['cpu_model']}), torch {m['torch']} on {m['torch_threads']} thread(s), diffusers {m['diffusers']}, "
        f"Python {m['python']}. Load average at start {m['loadavg_at_start'][0]:.2f}, at end "
        f"{m['loadavg_at_end'][0]:.2f} (1 min); timings from a loaded machine mean nothing. Total {res['seconds']:.0f} s.",
        "",
        f"## 1. Capture overhead ({cap['images_per_call']} images per call, {cap['steps']} steps, guidance "
        f"{cap['guidance']} at t <= {cap['guidance_max_timestep']}, cross-attention recorded at t <= "
        f"{cap['record_max_timestep']}, self-attention at the last {cap['self_attention_steps'] or 'all'} of those "
        f"steps, {cap['repeats']} interleaved rounds)",
        "",
        "| variant | median s / image (sampling) | + masks | vs plain SDPA (paired median) |",
        "|---|---|---|---|",
    ]
    for name, v in cap["variants"].items():
        if name == PLAIN_SDPA:
            rel = "baseline"
        elif name == PLAIN_EXPLICIT:
            rel = _pct(cap["explicit_vs_sdpa"]["overhead"])
        else:
            rel = _pct(cap["overhead_vs_plain_sdpa"][name]["overhead"])
        masks = f"{v['masks']['median_s_per_image']:.4f}" if "masks" in v else "-"
        lines.append(f"| {name} | {v['sample']['median_s_per_image']:.4f} | {masks} | {rel} |")
    o = cap["overhead_vs_plain_sdpa"]
    lines += [
        "",
        f"Capture overhead (sampling only; goal <= {100 * cap['goal_overhead']:.0f} %): cross-attention "
        f"{_pct(o['capture_cross']['overhead'])} ({_range(o['capture_cross'])}), cross + self-attention "
        f"{_pct(o['capture_cross_self']['overhead'])} ({_range(o['capture_cross_self'])}). "
        f"With the masks computed from the store: {_pct(o['capture_cross_with_masks']['overhead'])} (otsu rule) and "
        f"{_pct(o['capture_cross_self_with_masks']['overhead'])} (affinity rule). Where it comes from: at "
        f"recorded steps the recorders compute the conditional rows' attention explicitly (no SDPA) in every "
        f"cross-attention layer, whatever the map resolutions, and in the self-attention layers at the refinement "
        f"resolution at the steps that record self-attention; other steps and rows run the layer's own processor. "
        f"Plain generation with "
        f"diffusers' explicit `AttnProcessor` on every layer is {_pct(cap['explicit_vs_sdpa']['overhead'])} "
        f"against SDPA. Largest pixel difference from plain SDPA: "
        + ", ".join(f"{k} {v}" for k, v in cap["max_pixel_diff_vs_plain_sdpa"].items()) + " (of 255).",
        "",
        f"## 2. Peak RSS (fresh process per run, VmHWM; batch {rss['batch_size']}, shard size {rss['shard_size']}, "
        f"{rss['steps']['repeats']} runs per config)",
        "",
        "| comparison | a | b | median peak a (MiB) | median peak b (MiB) | b / a | flat within "
        f"{100 * rss['goal_flat']:.0f} % | spread a / b |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label in (("steps", "denoising steps"), ("images", "object images")):
        c = rss[key]
        a_n, b_n = (c["a"]["objects"], c["b"]["objects"]) if key == "images" else c["compared"]
        lines.append(f"| {label} | {a_n} | {b_n} | {c['a']['median_peak_mib']:.1f} | {c['b']['median_peak_mib']:.1f} | "
                     f"{c['ratio_b_over_a']:.3f} | {'yes' if c['flat_within_goal'] else 'NO'} | "
                     f"{100 * c['a']['spread']:.1f} % / {100 * c['b']['spread']:.1f} % |")
    lines += [
        "",
        f"Loading the generator alone peaks at {peak_mib(rss['load_only']):.1f} MiB. Image-count runs at "
        f"{rss['images']['steps']} steps; step-count runs on {rss['steps']['a']['objects']} images. Spread: "
        f"(max - min) / median over identical runs, the noise floor of the comparison. Median wall time per run: "
        + ", ".join(f"{rss[k][s]['median_seconds']:.0f} s" for k in ("steps", "images") for s in ("a", "b")) + ".",
        "",
        f"## 3. Toy images per second (the stage's `attention_masks`: sampling with capture + "
        f"{thr['threshold_rule']} masks; {thr['images_per_call']} images per call, {thr['steps']} steps)",
        "",
        "| guidance | images / s | s / image | vs guidance 1.0 |",
        "|---|---|---|---|",
    ]
    for name, v in thr["variants"].items():
        rel = "baseline" if name == "guidance_1.0" else f"{thr['cfg_slowdown'][name]:.2f}x"
        lines.append(f"| {name} | {v['images_per_s']:.2f} | {v['median_s_per_image']:.4f} | {rel} |")
    lines += ["", f"`guidance_3.0` guides at t <= {thr['guidance_max_timestep']} as the stage does; "
              "`guidance_3.0_every_step` at every step.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def run(generator_dir: Path, params_path: Path, sizes: Sizes, threads: int, quick: bool) -> dict:
    import torch

    from freemask.diffusion.toy import ToyGenerator
    from freemask.params import load

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    cfg = load(params_path).generate
    cfg = cfg.model_copy(update={k: v for k, v in (("steps", sizes.steps), ("batch_size", sizes.batch))
                                 if v is not None})
    res: dict = {"quick": quick, "generator": str(generator_dir), "params": str(params_path),
                 "machine": machine_info(threads)}
    gen = ToyGenerator.load(generator_dir)
    print(f"[1/3] capture overhead: {cfg.batch_size} images x {cfg.steps} steps, {sizes.repeats} rounds",
          file=sys.stderr)
    res["capture"] = measure_capture_overhead(gen, cfg, cfg.batch_size, sizes.repeats)
    print("[2/3] peak RSS, one fresh process per run", file=sys.stderr)
    res["peak_rss"] = measure_peak_rss(generator_dir, cfg, sizes, threads)
    print("[3/3] images per second with and without guidance", file=sys.stderr)
    res["throughput"] = measure_throughput(gen, cfg, cfg.batch_size, sizes.repeats)
    res["machine"]["loadavg_at_end"] = list(os.getloadavg())
    res["seconds"] = time.perf_counter() - t0
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run at tiny sizes (1-2 minutes; its numbers mean nothing)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads, here and in the RSS subprocesses")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON result (default benchmarks/results/attention_capture.json, "
                         "attention_capture.quick.json with --quick); the markdown summary goes beside it")
    ap.add_argument("--generator", type=Path, default=REPO / "models" / "generator")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml", help="the generate section is used")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed rounds (default 8: twice the balanced orders of the four generation variants; --quick 2)")
    ap.add_argument("--rss-repeats", type=int, default=None,
                    help="fresh processes per config of each peak-RSS comparison (default 3, --quick 2)")
    ap.add_argument("--batch", type=int, default=None, help="images per timed call (default generate.batch_size)")
    ap.add_argument("--rss-images", type=int, nargs=2, default=None, metavar=("A", "B"),
                    help="image counts of the peak-RSS comparison (default 100 1000)")
    ap.add_argument("--rss-steps-images", type=int, default=None,
                    help="images of the 10-vs-50-steps peak-RSS comparison (default one batch)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    for name in ("repeats", "rss_repeats", "batch", "rss_steps_images"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.rss_images is not None and not 1 <= args.rss_images[0] < args.rss_images[1]:
        ap.error("--rss-images needs 1 <= A < B")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(child_main(json.loads(args.child))))
        return
    sizes = QUICK if args.quick else FULL
    given = {"repeats": args.repeats, "rss_repeats": args.rss_repeats, "batch": args.batch,
             "rss_images": None if args.rss_images is None else tuple(args.rss_images),
             "rss_steps_images": args.rss_steps_images}
    sizes = Sizes(**{**sizes.__dict__, **{k: v for k, v in given.items() if v is not None}})
    out = args.out or REPO / "benchmarks" / "results" / (
        "attention_capture.quick.json" if args.quick else "attention_capture.json")
    res = run(args.generator.resolve(), args.params.resolve(), sizes, args.threads, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
