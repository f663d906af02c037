from pathlib import Path

import numpy as np
import pytest

from freemask.data import shards
from freemask.generators import dataset
from freemask.generators.dataset import generate_dataset, plan_objects, plan_scenes, plan_shards
from freemask.masks.threshold import normalize01, otsu_threshold, threshold
from freemask.world.spec import CLASSES, COOCCURRENCE


def _digest(d):
    """Every file's bytes by its path under ``d`` (objects/ and scenes/ hold files of the same names)."""
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_plan_uses_plausible_backgrounds_and_distinct_seeds(tiny_generate_cfg):
    plan = plan_objects(tiny_generate_cfg)
    assert len(plan) == 2 * len(CLASSES)
    assert all(COOCCURRENCE[p.background].get(p.cls, 0) > 0 for p in plan)
    assert len({p.seed for p in plan}) == len(plan)


def test_generate_writes_deterministic_shards(tmp_path, tiny_generator, tiny_generate_cfg):
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


def _interrupt_while_writing(monkeypatch, shard_name):
    """Make ``write_shard`` raise KeyboardInterrupt (Ctrl-C, or DVC passing on SIGINT) halfway
    through writing ``shard_name``: its first sample is already in the temporary file."""
    real = shards.write_shard

    def write_shard(path, samples):
        if Path(path).name != shard_name:
            return real(path, samples)

        def first_then_interrupt():
            yield next(iter(samples))
            assert Path(str(path) + ".tmp").exists()
            raise KeyboardInterrupt

        return real(path, first_then_interrupt())

    monkeypatch.setattr(shards, "write_shard", write_shard)


def _count_sampled_seeds(monkeypatch) -> list[int]:
    seeds = []
    real = dataset.sample

    def counting_sample(gen, prompts, sample_seeds, *args, **kwargs):
        seeds.extend(sample_seeds)
        return real(gen, prompts, sample_seeds, *args, **kwargs)

    monkeypatch.setattr(dataset, "sample", counting_sample)
    return seeds


def _files(d):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())


def test_interrupted_generate_resumes_with_only_the_missing_shards(tmp_path, tiny_generator, tiny_generate_cfg,
                                                                   monkeypatch):
    gdir, out = tmp_path / "gen", tmp_path / "out"
    tiny_generator.save(gdir)
    generate_dataset(tiny_generate_cfg, gdir, tmp_path / "whole")

    with monkeypatch.context() as m:
        _interrupt_while_writing(m, "shard-00001.tar")
        with pytest.raises(KeyboardInterrupt):
            generate_dataset(tiny_generate_cfg, gdir, out)
    # only whole files are left: the first shard and the stamps, no temporary file, no index
    assert _files(out) == ["objects/_fingerprint.txt", "objects/shard-00000.tar", "scenes/_fingerprint.txt"]
    first = (out / "objects" / "shard-00000.tar").stat()

    seeds = _count_sampled_seeds(monkeypatch)
    result = generate_dataset(tiny_generate_cfg, gdir, out)
    assert result["written"] == {"objects": [1, 2], "scenes": [0]}
    chunks = plan_shards(plan_objects(tiny_generate_cfg), tiny_generate_cfg.shard_size)
    assert sorted(seeds) == sorted(p.seed for p in chunks[1] + chunks[2] + plan_scenes(tiny_generate_cfg))
    again = (out / "objects" / "shard-00000.tar").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert _digest(out) == _digest(tmp_path / "whole")


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
