import numpy as np
import pytest

from freemask.data import shards
from freemask.generators.dataset import generate_dataset, plan_objects
from freemask.masks.threshold import normalize01, otsu_threshold, threshold
from freemask.world.spec import CLASSES, COOCCURRENCE


def _digest(d):
    return {p.name: p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_plan_uses_plausible_backgrounds_and_distinct_seeds(tiny_generate_cfg):
    plan = plan_objects(tiny_generate_cfg)
    assert len(plan) == 2 * len(CLASSES)
    assert all(COOCCURRENCE[p.background].get(p.cls, 0) > 0 for p in plan)
    assert len({p.seed for p in plan}) == len(plan)


def test_generate_writes_deterministic_shards_and_resumes(tmp_path, tiny_generator, tiny_generate_cfg):
    gdir = tmp_path / "gen"
    tiny_generator.save(gdir)
    out1, out2 = tmp_path / "a", tmp_path / "b"
    generate_dataset(tiny_generate_cfg, gdir, out1)
    generate_dataset(tiny_generate_cfg, gdir, out2)
    assert _digest(out1) == _digest(out2)
    samples = list(shards.read_shards(out1 / "objects"))
    assert len(samples) == 2 * len(CLASSES)
    key, m = samples[0]
    assert m["image.png"].shape == (32, 32, 3) and set(np.unique(m["label.png"])) <= {0, CLASSES.index(m["meta.json"]["class"]) + 1}
    # an interrupted run: one shard missing, another half-written
    victim = sorted((out1 / "objects").glob("shard-*.tar"))[1]
    victim.unlink()
    (out1 / "objects" / "shard-00000.tar.tmp").write_bytes(b"partial")
    generate_dataset(tiny_generate_cfg, gdir, out1)
    (out1 / "objects" / "shard-00000.tar.tmp").unlink()
    assert _digest(out1) == _digest(out2)


def test_changed_params_discard_stale_shards(tmp_path, tiny_generator, tiny_generate_cfg):
    gdir = tmp_path / "gen"
    tiny_generator.save(gdir)
    generate_dataset(tiny_generate_cfg, gdir, tmp_path / "o")
    cfg = tiny_generate_cfg.model_copy(update={"per_class": 1})
    generate_dataset(cfg, gdir, tmp_path / "o")
    assert len(list(shards.read_shards(tmp_path / "o" / "objects"))) == len(CLASSES)


def test_threshold_rules():
    m = np.zeros((10, 10))
    m[2:5, 2:5] = 1.0
    m = normalize01(m + 0.01 * np.random.default_rng(0).random((10, 10)))
    assert 0.05 < otsu_threshold(m) < 0.95
    assert threshold(m, "otsu").sum() == 9 and threshold(m, "fixed", 0.5).sum() == 9


def test_affinity_rule_gives_masks_from_the_generators_own_self_attention(tiny_generator, tiny_generate_cfg):
    from freemask.generators.dataset import attention_masks

    cfg = tiny_generate_cfg.model_copy(update={"threshold": tiny_generate_cfg.threshold.model_copy(update={"rule": "affinity"}),
                                              "refine": tiny_generate_cfg.refine.model_copy(update={"resolution": 16}),
                                              "max_timestep": 1000})
    plan = plan_objects(cfg)[:3]
    images, maps, masks = attention_masks(tiny_generator, plan, cfg)
    assert images.shape == (3, 32, 32, 3) and masks.shape == (3, 32, 32) and masks.dtype == bool
    grid = np.arange(0.05, 1.0, 0.05)
    for m, mask in zip(maps, masks):  # every mask is the raw map cut at one grid threshold
        assert any(np.array_equal(mask, m > tau) for tau in grid)

    bad = cfg.model_copy(update={"refine": cfg.refine.model_copy(update={"resolution": 64})})
    with pytest.raises(ValueError, match=r"generate.refine.resolution=64.*\[8, 16, 32\]"):
        attention_masks(tiny_generator, plan, bad)
