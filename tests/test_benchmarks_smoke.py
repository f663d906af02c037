"""The benchmark script's measurements run at the smallest size and give complete results.

No timing target is asserted here: timings belong to `benchmarks/attention_capture.py` on an
idle machine (see benchmarks/README.md), not to the test suite."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from freemask.params import Generate

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "attention_capture.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("attention_capture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture
def cfg() -> Generate:
    return Generate(per_class=1, scenes_per_background=0, steps=2, batch_size=2, shard_size=4)


def _positive(xs) -> bool:
    xs = list(xs)
    return bool(xs) and all(x > 0 for x in xs)


def test_timed_measurements_and_summary(bench, tiny_generator, cfg):
    capture = bench.measure_capture_overhead(tiny_generator, cfg, batch=2, repeats=1, warmup=False)
    assert set(capture["variants"]) == set(bench.GENERATION_VARIANTS)
    for name, parts in capture["variants"].items():
        assert set(parts) == {"sample", "total"} | ({"masks"} if name.startswith("capture") else set())
        assert _positive(p["median_s_per_image"] for p in parts.values())
    overhead = capture["overhead_vs_plain_sdpa"]
    assert set(overhead) == {"capture_cross", "capture_cross_self", "capture_cross_with_masks",
                             "capture_cross_self_with_masks"}
    assert _positive(r["paired_median_ratio"] for r in overhead.values())
    assert capture["explicit_vs_sdpa"]["paired_median_ratio"] > 0
    # recording changes how attention is computed, not what the model draws
    assert max(capture["max_pixel_diff_vs_plain_sdpa"].values()) <= 2

    throughput = bench.measure_throughput(tiny_generator, cfg, batch=2, repeats=1, warmup=False)
    assert set(throughput["variants"]) == {"guidance_1.0", "guidance_3.0", "guidance_3.0_every_step"}
    assert _positive(v["images_per_s"] for v in throughput["variants"].values())
    assert _positive(throughput["cfg_slowdown"].values())

    run = {"kind": "load", "seconds": 1.0, "ru_maxrss_kb": 1000, "vm_hwm_kb": 1000}
    side = {"objects": 8, "median_peak_mib": 1.0, "spread": 0.0, "median_seconds": 1.0}
    pair = {"a": side, "b": side, "ratio_b_over_a": 1.0, "flat_within_goal": True, "repeats": 1}
    text = bench.markdown({
        "quick": True, "generator": "g", "params": "p", "seconds": 1.0,
        "machine": {**bench.machine_info(1), "loadavg_at_end": [0.0, 0.0, 0.0]},
        "capture": capture, "throughput": throughput,
        "peak_rss": {"load_only": run, "steps": {"compared": [2, 4], **pair},
                     "images": {"compared": [8, 16], "steps": 2, **pair},
                     "batch_size": 2, "shard_size": 4, "goal_flat": 0.05}})
    for heading in ("## 1. Capture overhead", "## 2. Peak RSS", "## 3. Toy images per second"):
        assert heading in text


def test_peak_rss_child_runs_the_stage_and_reports_its_peak(bench, tiny_generator, cfg, tmp_path):
    tiny_generator.save(tmp_path / "gen")
    # the stage's code path, as the child process runs it (here in-process, to keep the test short)
    res = bench.child_main({"kind": "dataset", "generator": str(tmp_path / "gen"), "threads": 1,
                            "cfg": bench.dataset_cfg(cfg, 2, steps=2).model_dump()})
    assert res["counts"] == {"objects": 8, "scenes": 0}  # 2 images round up to one per class
    assert _positive([res["ru_maxrss_kb"], res["vm_hwm_kb"], res["seconds"]])
    # and one real fresh process
    fresh = bench.peak_rss_subprocess({"kind": "load", "generator": str(tmp_path / "gen"), "threads": 1})
    assert fresh["kind"] == "load" and _positive([fresh["ru_maxrss_kb"], fresh["vm_hwm_kb"]])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_balanced_orders_put_every_variant_after_every_other_equally_often(bench, n):
    orders = bench.balanced_orders(n)
    assert all(sorted(o) == list(range(n)) for o in orders)
    follows = {}
    for o in orders:
        for before, after in zip(o, o[1:]):
            follows[before, after] = follows.get((before, after), 0) + 1
    assert set(follows) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(follows.values())) <= 1  # each ordered pair equally often
    for position in range(n):  # and each variant in each position equally often
        counts = [sum(o[position] == v for o in orders) for v in range(n)]
        assert len(set(counts)) == 1


def test_interleaved_rounds_run_each_variant_once_per_round_in_balanced_order(bench):
    calls = []
    variants = {name: (lambda name=name: calls.append(name) or {"sample": 1.0}) for name in "abcd"}
    rounds = bench.run_interleaved(variants, repeats=4, warmup=True)
    assert len(rounds) == 4 and all(set(r) == set("abcd") for r in rounds)
    timed = ["".join(calls[i:i + 4]) for i in range(4, 20, 4)]
    assert timed == ["abdc", "bcad", "cdba", "dacb"]
