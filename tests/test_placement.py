"""Foreground Object Location: the world's placement judge, the composite loss, the placement
network's training and folder, and the proposal modes."""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from freemask.compose.placement import (MODES, PlacementModel, PlacementPrior, box_of, iou, load_placement, propose,
                                        save_placement)
from freemask.compose.placement_net import heatmap_loss, semantic_loss, spatial_terms
from freemask.compose.train_placement import KIND_TRAIN, make_example, train_net, train_placement
from freemask.errors import DataError
from freemask.params import ParamsError, PlacementParams, dump_defaults, validate
from freemask.world import placement as wp
from freemask.world.render import place
from freemask.world.spec import CLASSES

ROOT = Path(__file__).resolve().parents[1]
TINY = PlacementParams(canvas=16, width=8, features=4, n_scales=6, examples=24, positives=4, negatives=4,
                       prior_samples=50, teacher_steps=5, steps=40, batch_size=8, lr=3e-3, val_scenes=2, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("placement") / "model"
    summary = train_placement(TINY, out, progress=False)
    return out, summary


# -- the judge -------------------------------------------------------------------------------------

def test_the_judge_accepts_every_placement_the_renderer_draws():
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        for _ in range(300):
            o = place(rng, cls)
            assert wp.plausible(cls, o.cx, o.cy, o.size), (cls, o)
            assert wp.plausible_box(cls, *wp.box_of_frame(cls, o.cx, o.cy, o.size)), (cls, o)


def test_the_judge_refuses_a_car_in_the_sky_a_plane_at_the_bottom_and_wrong_sizes():
    def at(cls, cy, factor=1.0):
        return wp.plausible(cls, 0.5, cy, wp.expected_size(cls, cy) * factor)

    assert at("car", 0.7) and at("aeroplane", 0.3)
    assert not at("car", 0.2)  # in the sky
    assert not at("aeroplane", 0.85)  # at the bottom
    assert not at("balloon", 0.8) and not at("ball", 0.25)  # the look-alikes swapped
    assert not at("car", 0.7, 0.6) and not at("car", 0.7, 1.5)  # too small / too large for the height
    assert not wp.plausible("car", 0.05, 0.7, wp.expected_size("car", 0.7))  # half out of the image
    assert at("car", 0.87) is False and wp.plausible("car", 0.5, 0.87, wp.expected_size("car", 0.87), tolerance=0.03)


def test_the_size_jitter_is_the_one_the_renderer_draws():
    rng = np.random.default_rng(1)
    ratios = [o.size / wp.expected_size("tree", o.cy) for o in (place(rng, "tree") for _ in range(3000))]
    assert wp.SIZE_JITTER[0] <= min(ratios) < wp.SIZE_JITTER[0] + 0.01
    assert wp.SIZE_JITTER[1] - 0.01 < max(ratios) <= wp.SIZE_JITTER[1]


@pytest.mark.parametrize("kind", wp.NEGATIVE_KINDS)
def test_every_kind_of_negative_breaks_the_prior(kind):
    rng = np.random.default_rng(2)
    for cls in CLASSES:
        for _ in range(40):
            o = wp.implausible(rng, cls, kind)
            assert not wp.plausible(cls, o.cx, o.cy, o.size, tolerance=0.015), (cls, kind, o)


def test_box_and_frame_placements_convert_both_ways():
    assert wp.object_extent("ball") == pytest.approx((-0.45, 0.45, -0.45, 0.45), abs=0.002)
    for cls in CLASSES:
        box = wp.box_of_frame(cls, 0.4, 0.6, 0.3)
        assert wp.frame_of_box(cls, *box) == pytest.approx((0.4, 0.6, 0.3))
    # a boat's sail rises above its frame centre: its box centre is higher
    assert wp.box_of_frame("boat", 0.5, 0.6, 0.4)[1] < 0.6


# -- the composite loss ----------------------------------------------------------------------------

def test_each_spatial_term_lies_in_0_1_and_is_0_for_a_perfect_match():
    g = torch.Generator().manual_seed(0)
    pred = torch.cat([torch.rand(500, 2, generator=g), 0.01 + torch.rand(500, 2, generator=g)], 1)
    true = torch.cat([torch.rand(500, 2, generator=g), 0.01 + torch.rand(500, 2, generator=g)], 1)
    for term in spatial_terms(pred, true):
        assert term.min() >= 0 and term.max() <= 1
    for term in spatial_terms(true, true):
        assert term.min() >= 0 and term.max() < 1e-5
    iou_term, centre, aspect = spatial_terms(torch.tensor([0.2, 0.2, 0.1, 0.1]), torch.tensor([0.8, 0.8, 0.1, 0.4]))
    assert iou_term == 1 and 0 < centre < 1 and 0 < aspect < 1
    assert spatial_terms(torch.tensor([0.5, 0.5, 1.0, 1e-6]), torch.tensor([0.5, 0.5, 1e-6, 1.0]))[2] > 0.999


def test_the_semantic_and_heatmap_terms_lie_in_0_1_and_are_0_for_a_perfect_match():
    f = torch.randn(4, 6, 8)
    assert semantic_loss(f, f) < 1e-6 and semantic_loss(f, 3 * f) < 1e-6  # features compared by direction
    assert semantic_loss(f, -f) == pytest.approx(1.0)
    assert 0 < semantic_loss(f, torch.randn(4, 6, 8)) < 1
    y = (torch.rand(4, 6) > 0.5).float()
    assert heatmap_loss(y, y) == 0 and heatmap_loss(1 - y, y) == 1
    assert 0 < heatmap_loss(torch.rand(4, 6), y) < 1


# -- training and the model folder -----------------------------------------------------------------

def test_training_lowers_the_loss():
    torch.set_num_threads(1)
    cfg = TINY.model_copy(update={"steps": 60, "lr": 1e-2})
    examples = [make_example(0, KIND_TRAIN, i, cfg) for i in range(cfg.examples)]
    f_com = torch.randn(len(examples), cfg.positives + cfg.negatives, cfg.features)
    _, log = train_net(examples, f_com, cfg, progress=False)
    first, last = (lambda k: np.mean(log[k][:10])), (lambda k: np.mean(log[k][-10:]))
    assert last("total") < 0.85 * first("total")
    assert last("heatmap") < 0.85 * first("heatmap") and last("semantic") < first("semantic")


def test_examples_hold_the_renderer_s_placements_and_negatives_the_judge_refuses():
    ex = make_example(0, KIND_TRAIN, 3, PlacementParams())
    assert ex.cls == CLASSES[3] and ex.scene.shape == (32, 32, 3) and ex.cutout.label == 4
    judged = [wp.plausible_box(ex.cls, *p) for p in ex.placements]
    assert judged == [bool(v) for v in ex.labels]


def test_the_model_folder_round_trips_bit_identically(trained, tmp_path):
    path, summary = trained
    model = load_placement(path)
    assert set(summary["val"]) == set(MODES) and 0 <= summary["val"]["learned"]["plausibility"] <= 1
    save_placement(model, tmp_path / "again")
    for part in ("config.json", "weights.safetensors", "prior.safetensors"):
        assert (tmp_path / "again" / part).read_bytes() == (path / part).read_bytes(), part
    ex = make_example(5, KIND_TRAIN, 1, TINY)
    assert np.array_equal(model.heatmap(ex.scene, ex.cutout, ex.cls),
                          load_placement(tmp_path / "again").heatmap(ex.scene, ex.cutout, ex.cls))


def test_the_same_params_train_the_same_bytes(trained, tmp_path):
    path, summary = trained
    again = train_placement(TINY, tmp_path / "m", progress=False)
    assert (tmp_path / "m" / "weights.safetensors").read_bytes() == (path / "weights.safetensors").read_bytes()
    assert again["val"] == summary["val"]


@pytest.mark.parametrize("part, damage", [("weights.safetensors", "truncate"), ("prior.safetensors", "remove"),
                                          ("config.json", "foreign"), ("weights.safetensors", "foreign")])
def test_a_damaged_model_folder_names_the_file(trained, tmp_path, part, damage):
    import shutil

    path = tmp_path / "model"
    shutil.copytree(trained[0], path)
    f = path / part
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[:100])
    elif damage == "remove":
        f.unlink()
    elif part == "config.json":
        f.write_text('{"canvas": 16, "colour": 3}')
    else:
        from safetensors.torch import save_file
        save_file({"x": torch.zeros(2)}, str(f))
    with pytest.raises(DataError) as err:
        load_placement(path)
    assert str(path / part) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_model_folder_says_which_stage_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_placement"):
        load_placement(tmp_path / "nothing")


# -- proposing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_the_overlap_bound_holds(trained, mode):
    model = load_placement(trained[0])
    cfg = TINY.model_copy(update={"max_overlap": 0.1, "min_score": 0.0})
    ex = make_example(9, KIND_TRAIN, 4, cfg)
    rng = np.random.default_rng(0)
    placed = []
    for _ in range(6):
        p = propose(mode, ex.cls, ex.scene, ex.cutout, rng, placed, model=model, cfg=cfg)
        if p is not None:
            box = box_of(ex.cutout, *p)
            assert all(iou(np.asarray(box), q) <= 0.1 + 1e-12 for q in placed)
            placed.append(box)
    assert len(placed) >= 2
    # no room left: nothing is proposed
    assert propose(mode, ex.cls, ex.scene, ex.cutout, rng, [(-1, -1, 2, 2)], model=model,
                   cfg=cfg.model_copy(update={"max_overlap": 0.0})) is None


@pytest.mark.parametrize("mode", MODES)
def test_proposals_are_deterministic_and_prior_and_random_keep_to_their_ranges(trained, mode):
    model = load_placement(trained[0])
    ex = make_example(9, KIND_TRAIN, 2, TINY)
    cfg = TINY.model_copy(update={"min_score": 0.0})  # the tiny net is sure of nothing: every cell may be drawn
    a = [propose(mode, ex.cls, ex.scene, ex.cutout, np.random.default_rng(s), model=model, cfg=cfg) for s in range(20)]
    b = [propose(mode, ex.cls, ex.scene, ex.cutout, np.random.default_rng(s), model=model, cfg=cfg) for s in range(20)]
    assert a == b and len(set(a)) > 1
    if mode == "prior":  # the class's own placements: the world's prior accepts them all
        assert all(wp.plausible_box(ex.cls, *p) for p in a)
    if mode == "random":
        assert all(0.15 <= p[2] <= 0.4 and p[2] / 2 <= p[0] <= 1 - p[2] / 2 for p in a)


def test_a_class_conditioned_network_is_told_the_class_and_a_class_blind_one_is_not(trained, tmp_path):
    model = load_placement(trained[0])
    ex = make_example(9, KIND_TRAIN, 3, TINY)
    assert model.net.shape.classes == tuple(CLASSES)  # TINY trains class-conditioned, the default
    maps = {c: model.heatmap(ex.scene, ex.cutout, c) for c in ("ball", "balloon")}
    assert not np.array_equal(maps["ball"], maps["balloon"])  # the same cut-out, told another class
    with pytest.raises(KeyError, match="no class 'kite'"):
        model.heatmap(ex.scene, ex.cutout, "kite")
    with pytest.raises(ValueError, match="needs each cut-out's class"):
        model.heatmap(ex.scene, ex.cutout)
    blind = TINY.model_copy(update={"class_conditioned": False, "steps": 2, "teacher_steps": 2})
    train_placement(blind, tmp_path / "blind", progress=False)
    again = load_placement(tmp_path / "blind")
    assert again.net.shape.classes == () and again.net.embed is None
    assert np.array_equal(again.heatmap(ex.scene, ex.cutout, "ball"), again.heatmap(ex.scene, ex.cutout, "balloon"))


def test_the_prior_holds_the_class_s_own_statistics():
    prior = PlacementPrior.from_renderer(0, 200)
    cy = prior.placements["aeroplane"][:, 1], prior.placements["car"][:, 1]
    assert cy[0].max() < 0.55 < cy[1].mean()  # planes high, cars low
    assert PlacementModel  # the prior travels inside the model folder (round-trip test above)


def test_a_bad_mode_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="compose.placement"):
        propose("learnt", "car", np.zeros((32, 32, 3), np.uint8), None, np.random.default_rng(0))
    data = dump_defaults()
    data["compose"]["placement"] = "learnt"
    with pytest.raises(ParamsError, match="compose.placement"):
        validate(data)
    data = dump_defaults()
    data["placement"]["lambda_heatmap"] = 0.9
    with pytest.raises(ParamsError, match="placement.lambda_spatial \\+ placement.lambda_semantic"):
        validate(data)
    # through the stage: one error line, exit status 2
    data = dump_defaults()
    data["placement"]["selection"] = "best"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), FREEMASK_PARAMS=str(tmp_path / "params.yaml"))
    r = subprocess.run([sys.executable, str(ROOT / "stages/train_placement.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    # params errors list each bad key on a line of its own under the one error line
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "\n  placement.selection: " in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "models").exists()


def test_the_benchmark_runs_at_its_smallest_size(tmp_path):
    spec = importlib.util.spec_from_file_location("placement_benchmark", ROOT / "benchmarks" / "placement.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.run(TINY, seeds=[0, 1], per_class=1, out_dir=tmp_path)
    assert "| learned |" in bench.markdown(out, 0.02)
    assert set(out["modes"]) == set(MODES)
    for mode in MODES:
        assert len(out["modes"][mode]["per_seed"]) == 2 and not math.isnan(out["modes"][mode]["mean"])


# -- placements harvested from generated images (placement.source: generated) -----------------------

def _generated(tmp_path, n=10):
    """Objects of two non-toy classes as the generate stage writes them: 'kite' high in its 32 x 32
    image (box centre y 0.25, side 0.25), 'dog' low (centre y 0.75, side 0.375); scenes of two
    backgrounds."""
    from freemask.data import shards

    def obj(value, top, size, bg):
        img, lab = np.full((32, 32, 3), 90, np.uint8), np.zeros((32, 32), np.uint8)
        img[top:top + size, 4:4 + size], lab[top:top + size, 4:4 + size] = 40 * value, value
        return {"image.png": img, "label.png": lab, "meta.json": {"background": "sky" if value == 1 else "grass"}}

    objs = [(f"o{i}", obj(1, 4, 8, "sky") if i % 2 else obj(2, 18, 12, "grass")) for i in range(n)]
    shards.write_shard(tmp_path / "objects" / shards.shard_name(0), objs)
    shards.write_shard(tmp_path / "scenes" / shards.shard_name(0),
                       [(f"{bg}_{j}", {"image.png": np.full((32, 32, 3), shade + j, np.uint8), "meta.json": {"background": bg}})
                        for bg, shade in (("sky", 200), ("grass", 60)) for j in range(3)])
    return (tmp_path / "objects", tmp_path / "scenes")


def test_harvest_reads_each_generated_object_s_own_box_and_holds_some_out(tmp_path):
    from freemask.compose.train_placement import harvest

    h = harvest(*_generated(tmp_path), ("kite", "dog"), TINY.model_copy(update={"val_every": 5}))
    assert len(h.cutouts) == 10 and np.flatnonzero(h.val).tolist() == [8, 9]  # each class's 5th
    kite, dog = h.placements[h.of("kite")], h.placements[h.of("dog")]
    assert np.allclose(kite, [8 / 32, 8 / 32, 8 / 32]) and np.allclose(dog, [10 / 32, 24 / 32, 12 / 32])
    assert {c.background for c in h.cutouts} == {"sky", "grass"} and len(h.scenes) == 6
    with pytest.raises(DataError, match="no generated object of cat"):
        harvest(*_generated(tmp_path / "again"), ("kite", "dog", "cat"), TINY)


def test_generated_examples_label_the_harvested_support_1_and_the_rest_0(tmp_path):
    from freemask.compose.train_placement import KIND_VAL, harvest, in_support, make_generated_example

    classes = ("kite", "dog")
    cfg = TINY.model_copy(update={"canvas": 32, "positives": 6, "negatives": 8})
    h = harvest(*_generated(tmp_path), classes, cfg)
    for i in range(6):
        ex = make_generated_example(h, 0, KIND_VAL if i % 2 else KIND_TRAIN, i, cfg, classes)
        assert ex.cls == classes[i % 2] and ex.scene.shape == (32, 32, 3)
        support = in_support(ex.placements, h.placements[h.of(ex.cls)], cfg)
        assert support.tolist() == [bool(v) for v in ex.labels]  # every positive in, every negative out
        assert ex.labels.sum() == 6
    # a held-out example's cut-out is never one the statistics came from
    ex = make_generated_example(h, 0, KIND_VAL, 0, cfg, classes)
    assert any(ex.cutout is h.cutouts[j] for j in h.of("kite", val=True))


def test_train_placement_on_generated_images_serves_a_profile_s_own_classes(tmp_path):
    from freemask.compose.scenes import load_tools
    from freemask.params import Compose

    classes = ("kite", "dog")
    cfg = TINY.model_copy(update={"source": "generated", "canvas": 32})
    summary = train_placement(cfg, tmp_path / "model", classes=classes, generated=_generated(tmp_path), progress=False)
    assert "val" not in summary and set(summary["val_support"]) == set(MODES)  # no world to judge by
    assert summary["val_support"]["prior"]["plausibility"] == 1.0  # the harvested placements themselves
    model = load_placement(tmp_path / "model")
    assert model.net.shape.classes == classes and set(model.prior.placements) == set(classes)
    assert load_tools(Compose(placement="learned"), list(classes), cfg, tmp_path / "model", tmp_path / "none").placement_model
    with pytest.raises(DataError, match="knows no cat"):
        load_tools(Compose(placement="learned"), ["kite", "cat"], cfg, tmp_path / "model", tmp_path / "none")
    with pytest.raises(ParamsError, match="placement.source"):
        train_placement(TINY, tmp_path / "m2", classes=classes, progress=False)
