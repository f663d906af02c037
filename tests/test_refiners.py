"""The refiners' comparison: per-class spread over replicates, the gain over the starting masks,
its markdown table, and refined objects written as the generate stage writes objects."""
import numpy as np
import pytest

from freemask.assess.refiners import Subset, _spread, score_masks
from freemask.reports.tables import refiners_tables


def _subset() -> Subset:
    truth = np.zeros((4, 8, 8), bool)
    truth[:, 2:6, 2:6] = True
    start = truth.copy()
    start[:, 2:6, 6:8] = True  # 16 true pixels, 8 extra: IoU 16 / 24
    return Subset(np.zeros((4, 8, 8, 3), np.uint8), start, truth, ["ball", "ball", "car", "car"], ["p"] * 4,
                  ["grass"] * 4)


def test_spread_is_the_mean_and_sample_sd_over_replicates_per_class_and_of_the_class_mean():
    s = _spread([{"ball": 0.5, "car": 0.7}, {"ball": 0.7, "car": 0.9}])
    assert s["per_class"]["ball"] == {"mean": 0.6, "sd": pytest.approx(0.1414, abs=1e-4)}
    assert s["mean"] == 0.7 and s["sd"] == pytest.approx(0.1414, abs=1e-4)
    assert _spread([{"ball": 0.5}])["per_class"]["ball"]["sd"] == 0.0


def test_score_masks_sets_the_method_against_its_starting_masks_on_the_same_samples():
    sub = _subset()
    out = sub.reference.copy()
    out[2:] = False
    out[2:, 2:4, 2:6] = True  # half of the car: IoU 0.5; the ball perfect
    res = score_masks(sub, [out, out])
    assert res["start"]["per_class"] == {"ball": round(16 / 24, 4), "car": round(16 / 24, 4)}
    assert res["method"]["per_class"]["ball"] == {"mean": 1.0, "sd": 0.0}
    assert res["gain"]["per_class"] == {"ball": round(1 - 16 / 24, 4), "car": round(0.5 - 16 / 24, 4)}
    assert res["gain"]["mean"] == pytest.approx(0.75 - 16 / 24, abs=1e-4)


def test_the_table_marks_a_gain_only_beyond_twice_the_replicates_sd():
    row = {"start": {"mean": 0.6, "per_class": {"ball": 0.6, "car": 0.6}},
           "method": {"mean": 0.7, "sd": 0.01, "per_class": {"ball": {"mean": 0.8, "sd": 0.01},
                                                               "car": {"mean": 0.61, "sd": 0.05}}},
           "gain": {"mean": 0.1, "per_class": {"ball": 0.2, "car": 0.01}}}
    table = {"n_generated": 4, "n_noised_renders": 4, "replicates": 2,
             "methods": {"paintseg": {"vs_oracle_on_generated": row, "vs_truth_on_noised_renders": row}}}
    md = refiners_tables(table, ["ball", "car"])
    assert "| gain of paintseg | +20.0* | +1.0 | **+10.0** |" in md
    assert "| paintseg | 80.0 ± 1.0 | 61.0 ± 5.0 | **70.0 ± 1.0** |" in md
    assert "| attention (where paintseg starts) | 60.0 | 60.0 | **60.0** |" in md


def _tiny_params():
    from freemask.params import Independence, PaintSeg, Params, Refiners

    return Params(paintseg=PaintSeg(steps=2, n_paintings=1, iterations=1),
                  independence=Independence(steps=4, distill_steps=2, batch_size=8, per_class=False),
                  refiners=Refiners(replicates=2))


def test_the_table_runs_both_methods_on_both_subsets_deterministically():
    from pathlib import Path

    import torch

    from freemask.assess.generator import noised_renders
    from freemask.assess.refiners import refiners_table
    from freemask.diffusion.models import load_generator

    torch.set_num_threads(1)
    gen = load_generator(Path(__file__).resolve().parents[1] / "models" / "generator")
    images, truth, classes, prompts = noised_renders(2, 5, 32)
    coarse = np.roll(truth, 2, axis=2)  # the truth shifted by 2 px: a starting mask to refine
    bgs = [q.rsplit(" the ", 1)[1] for q in prompts]
    gen_set = Subset(images[::4], coarse[::4], truth[::4], classes[::4], prompts[::4], bgs[::4])
    ren_set = Subset(images[1::4], coarse[1::4], truth[1::4], classes[1::4], prompts[1::4], bgs[1::4])
    pool = Subset(images, coarse, truth, classes, prompts, bgs)
    p = _tiny_params()
    a = refiners_table(p, gen, gen_set, ren_set, pool=pool)
    b = refiners_table(p, gen, gen_set, ren_set, pool=pool)
    assert a == b  # same params and seeds: the same table
    assert set(a["methods"]) == {"paintseg", "independence"} and a["replicates"] == 2 and a["n_pool"] == 16
    row = a["methods"]["paintseg"]["vs_truth_on_noised_renders"]
    assert set(row["start"]["per_class"]) == set(classes[1::4])
    assert row["gain"]["mean"] == pytest.approx(row["method"]["mean"] - row["start"]["mean"], abs=2e-4)
