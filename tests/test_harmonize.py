"""Harmonization of pasted objects: statistics matching of the light, the RAIN network, the dispatcher."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from freemask.compose.colour import lab_to_rgb, rgb_to_lab, to_uint8
from freemask.compose.harmonize import (KIND_TRAIN, KIND_VAL, LightReference, delta_e, fit_light, harmonize,
                                        log_rgb, reference_from_renders, relit_pairs, ring_mask, statistics, surround,
                                        train_harmonizer)
from freemask.compose.rain import NetShape, TrainSettings, apply_rain, load_harmonizer, save_harmonizer, train_rain
from freemask.errors import DataError
from freemask.params import Harmonize, ParamsError, dump_defaults, validate

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=4, train_pairs=16, val_pairs=8, steps=3, batch_size=4)
GREEN = log_rgb(np.array([70, 150, 60]))
# grass scenes around green, sky scenes lit 1.2x brighter and bluer than grass
REF = LightReference({"grass": GREEN, "sky": log_rgb(np.array([90, 140, 220]))},
                     {"grass": np.zeros(3), "sky": np.log([1.1, 1.2, 1.3])})


def _scene(seed=0):
    """A 24x24 noisy green background with a noisy red square object (10x10) in it."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal((70, 150, 60), 12, (24, 24, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((24, 24), bool)
    mask[7:17, 8:18] = True
    img[mask] = np.clip(rng.normal((200, 60, 50), 8, (100, 3)), 0, 255).astype(np.uint8)
    return img, mask


def test_lab_matches_published_reference_values_and_round_trips():
    rgb = np.array([[255, 0, 0], [255, 255, 255], [0, 0, 0], [128, 128, 128], [0, 0, 255]], np.uint8)
    want = [[53.2408, 80.0925, 67.2032], [100, 0, 0], [0, 0, 0], [53.5850, 0, 0], [32.2970, 79.1875, -107.8602]]
    np.testing.assert_allclose(rgb_to_lab(rgb), want, atol=2e-3)
    every = np.random.default_rng(0).integers(0, 256, (5000, 3)).astype(np.uint8)
    assert np.array_equal(to_uint8(lab_to_rgb(rgb_to_lab(every))), every)


def test_statistics_applies_the_light_change_the_two_surrounds_imply():
    img, mask = _scene()
    around = surround(img, mask, 0.3)
    # cut out of a typical grass image, pasted into this grass scene: only the two images' own light differs
    typical = statistics(img, mask, REF, ("grass", GREEN), "grass", ring=0.3)
    np.testing.assert_allclose(typical[mask].astype(float), np.clip(img[mask] * np.exp(around - GREEN), 0, 255),
                               atol=0.51)
    # cut out of a sky image lit like its kind: the sky's light comes off the object
    from_sky = statistics(img, mask, REF, ("sky", REF.surround["sky"]), "grass", ring=0.3)
    gain = np.exp(around - GREEN - REF.light["sky"])
    np.testing.assert_allclose(from_sky[mask].astype(float), np.clip(img[mask] * gain, 0, 255), atol=0.51)
    assert from_sky[mask].mean() < img[mask].mean()
    half = statistics(img, mask, REF, ("sky", REF.surround["sky"]), "grass", ring=0.3, strength=0.5)
    np.testing.assert_allclose(half[mask].astype(float), np.clip(img[mask] * np.sqrt(gain), 0, 255), atol=0.51)
    with pytest.raises(KeyError, match="no reference for background 'road'"):
        statistics(img, mask, REF, ("road", GREEN), "grass")


def test_fit_light_recovers_the_lights_of_backgrounds_linked_by_shared_classes():
    rng = np.random.default_rng(0)
    colours = {c: rng.normal(-1, 0.3, 3) for c in "abc"}
    lights = {"grass": np.array([0.1, 0.0, -0.1]), "sky": np.array([0.2, 0.25, 0.3]), "floor": np.array([-0.3, -0.25, -0.2])}
    seen = [("a", "grass"), ("a", "sky"), ("b", "sky"), ("b", "floor"), ("c", "floor")]
    samples = [(c, k, colours[c] + lights[k], rng.normal(0, 1, 3)) for c, k in seen for _ in range(3)]
    ref = fit_light(samples)
    mean = np.mean(list(lights.values()), 0)
    for k, light in lights.items():
        np.testing.assert_allclose(ref.light[k], light - mean, atol=1e-9)
        np.testing.assert_allclose(ref.surround[k], np.mean([s for _, kk, _, s in samples if kk == k], 0))
    with pytest.raises(ValueError, match=r"backgrounds floor \| grass, sky share no generated class"):
        fit_light([s for s in samples if (s[0], s[1]) != ("b", "floor")])
    with pytest.raises(ValueError, match="no single-object image"):
        fit_light([])


def test_statistics_halves_the_colour_error_on_held_out_toy_pairs():
    """The issue's goal at test size: fitted on renders, on pairs it never saw, at most half of none's
    error (the benchmark measures 600 pairs)."""
    ref = reference_from_renders(0, 600, 32, 0.25)
    comps, targets, masks, what, sources = relit_pairs(0, KIND_VAL, 200, 32, balanced=True, with_source=True)
    out = np.stack([statistics(c, m, ref, (src, surround(so, m, 0.25)), tgt)
                    for c, m, so, (_, src, tgt) in zip(comps, masks, sources, what)])
    assert delta_e(out, targets, masks).mean() < 0.5 * delta_e(comps, targets, masks).mean()


def test_ring_is_bounded_by_the_object_size_and_zero_means_the_whole_rest():
    _, mask = _scene()
    ring = ring_mask(mask, 0.2)  # 10 px object: a 2 px ring
    assert ring.sum() == 14 * 14 - 100
    assert np.array_equal(ring_mask(mask, 0), ~mask)


@pytest.mark.parametrize("method", ["statistics", "rain", "none"])
def test_pixels_outside_the_mask_are_untouched_bit_for_bit(method):
    img, mask = _scene()
    net = train_rain(img[None], img[None], mask[None], NetShape(width=4), TrainSettings(steps=2, batch_size=1),
                     progress=False)[0]
    out = harmonize(img, mask, method, net=net, ref=REF, source=("sky", GREEN), target="grass")
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out[~mask], img[~mask])
    if method == "none":
        assert np.array_equal(out, img) and out is not img


def test_empty_mask_and_mask_without_background_leave_the_image_alone():
    img, _ = _scene()
    assert np.array_equal(statistics(img, np.zeros((24, 24), bool), REF, ("sky", GREEN), "grass"), img)
    assert np.array_equal(statistics(img, np.ones((24, 24), bool), REF, ("sky", GREEN), "grass"), img)


def test_bad_method_and_rain_without_a_net_name_the_key():
    img, mask = _scene()
    with pytest.raises(KeyError, match=r"compose\.harmonize must be one of statistics, rain, none, got 'reinhard'"):
        harmonize(img, mask, "reinhard")
    with pytest.raises(ValueError, match=r"compose\.harmonize=rain needs a network"):
        harmonize(img, mask, "rain")
    with pytest.raises(ValueError, match=r"compose\.harmonize=statistics needs a light reference"):
        harmonize(img, mask, "statistics", ref=REF, target="grass")
    data = dump_defaults()
    data["compose"]["harmonize"] = "reinhard"
    with pytest.raises(ParamsError, match=r"compose\.harmonize: Input should be 'statistics', 'rain' or 'none'"):
        validate(data)


def test_relit_pairs_differ_only_inside_the_mask_and_balanced_cover_every_combination():
    comps, targets, masks, what = relit_pairs(0, KIND_TRAIN, 400, 32, balanced=True)
    assert len(set(what)) == 8 * 5 * 5 and all(m.any() for m in masks)
    assert all(np.array_equal(c[~m], t[~m]) for c, t, m in zip(comps, targets, masks))
    err = delta_e(comps, targets, masks)
    cross = np.array([a != b for _, a, b in what])
    assert err[cross].mean() > err[~cross].mean() > 0  # another background's light is further off
    again = relit_pairs(0, KIND_TRAIN, 5, 32)
    assert np.array_equal(again[0], relit_pairs(0, KIND_TRAIN, 5, 32)[0])
    # asking for the source images changes none of the pairs; a source is lit as the object's pixels are
    *same, what, sources = relit_pairs(0, KIND_TRAIN, 5, 32, with_source=True)
    assert all(np.array_equal(a, b) for a, b in zip(same, again[:3])) and what == again[3]
    assert sources.shape == again[0].shape and not np.array_equal(sources, again[1])


def test_rain_trains_and_round_trips_through_save_and_load_bit_identically(tmp_path):
    comps, targets, masks, _ = relit_pairs(0, KIND_TRAIN, 12, 32)
    net, losses = train_rain(comps, targets, masks, NetShape(width=4), TrainSettings(steps=4, batch_size=4),
                             progress=False)
    assert len(losses) == 4 and all(np.isfinite(losses))
    moved = apply_rain(net, comps, masks)
    assert not np.array_equal(moved, comps)  # it learned something, if only a little
    save_harmonizer(net, tmp_path / "h")
    again = load_harmonizer(tmp_path / "h")
    assert again.shape == NetShape(width=4)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(net.state_dict().values(),
                                                                    again.state_dict().values()))
    assert np.array_equal(apply_rain(again, comps, masks), moved)


def test_rain_handles_sides_that_are_not_a_multiple_of_four():
    img, mask = _scene()
    img, mask = img[:23, :21], mask[:23, :21]
    net = train_rain(img[None], img[None], mask[None], NetShape(width=4), TrainSettings(steps=1, batch_size=1),
                     progress=False)[0]
    out = harmonize(img, mask, "rain", net=net)
    assert out.shape == img.shape and np.array_equal(out[~mask], img[~mask])


def test_same_seed_same_bytes(tmp_path):
    img, mask = _scene()
    args = REF, ("sky", GREEN), "grass"
    assert statistics(img, mask, *args).tobytes() == statistics(img.copy(), mask.copy(), *args).tobytes()
    cfg = Harmonize(**TINY)
    a = train_harmonizer(cfg, tmp_path / "a", progress=False)
    b = train_harmonizer(cfg, tmp_path / "b", progress=False)
    assert a == b
    for name in ("weights.safetensors", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    train_harmonizer(Harmonize(**{**TINY, "seed": 1}), tmp_path / "c", progress=False)
    assert (tmp_path / "c" / "weights.safetensors").read_bytes() != (tmp_path / "a" / "weights.safetensors").read_bytes()


@pytest.mark.parametrize("damage, culprit", [
    (lambda d: (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:200]),
     r"h/weights\.safetensors: not a whole safetensors file"),
    (lambda d: (d / "weights.safetensors").unlink(), r"h/weights\.safetensors: missing"),
    (lambda d: (d / "config.json").write_text("{width: 4"), r"h/config\.json: not valid JSON"),
    (lambda d: (d / "config.json").write_text('{"depth": 3}'), r"h/config\.json: not a harmonizer config"),
    (lambda d: (d / "config.json").write_text('{"width": 8}'), r"h/weights\.safetensors: does not fit config\.json"),
])
def test_damaged_checkpoint_is_one_line_naming_the_file(tmp_path, damage, culprit):
    img, mask = _scene()
    net = train_rain(img[None], img[None], mask[None], NetShape(width=4), TrainSettings(steps=1, batch_size=1),
                     progress=False)[0]
    save_harmonizer(net, tmp_path / "h")
    damage(tmp_path / "h")
    with pytest.raises(DataError, match=culprit) as err:
        load_harmonizer(tmp_path / "h")
    assert "\n" not in str(err.value)


def test_stage_trains_and_writes_model_and_metrics(tmp_path):
    params = dump_defaults()
    params["harmonize"].update(TINY, threads=1)
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, str(ROOT / "stages" / "train_harmonizer.py")], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    details = json.loads((tmp_path / "metrics" / "details" / "harmonizer.json").read_text())
    assert details["val_delta_e_none"] > 0 and details["val_delta_e_rain"] > 0
    metrics = json.loads((tmp_path / "metrics" / "harmonizer.json").read_text())
    assert metrics == {"val_ratio_rain_to_none": details["val_ratio_rain_to_none"]}
    assert load_harmonizer(tmp_path / "models" / "harmonizer").shape == NetShape(width=4)
    params["harmonize"]["strength"] = 2
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    bad = subprocess.run([sys.executable, str(ROOT / "stages" / "train_harmonizer.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "harmonize.strength" in bad.stderr and "Traceback" not in bad.stderr


def test_benchmark_measures_every_method_on_every_combination(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("harmonization_bench", ROOT / "benchmarks" / "harmonization.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    comps, targets, masks, _ = relit_pairs(0, KIND_TRAIN, 8, 32)
    save_harmonizer(train_rain(comps, targets, masks, NetShape(width=4), TrainSettings(steps=1, batch_size=4),
                               progress=False)[0], tmp_path / "h")
    r = bench.measure(tmp_path / "h", per_combo=1, seed=0, resolution=32, ring=0.25, strength=1.0, renders=300,
                      objects=None)
    assert r["pairs"] == 200 and r["same_background_pairs"] == 40
    assert set(r["methods"]) == {"none", "statistics", "rain"} and r["methods"]["none"]["ratio_to_none"] == 1
    assert len(r["statistics_sweep"]) == len(bench.SWEEP)
    # knowing both backgrounds' lighting removes most of the error: the pairs are what they claim
    assert r["reference_true_lighting_ratio"]["delta_e_other_background"] < 0.6 * r["methods"]["none"][
        "delta_e_other_background"]
    assert r["examples_png"][:8] == b"\x89PNG\r\n\x1a\n"
