from pathlib import Path

import numpy as np

from freemask.labels import toy_labels
import pytest
import torch

from freemask.data import shards
from freemask.generate import dataset
from freemask.generate.dataset import generate_dataset
from freemask.generate.plan import plan_objects, plan_scenes, plan_shards
from freemask.masks.threshold import normalize01, otsu_threshold, threshold
from freemask.world.spec import CLASSES, COOCCURRENCE


def _digest(d):
    """Every file's bytes by its path under ``d`` (objects/ and scenes/ hold files of the same names)."""
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_plan_uses_plausible_backgrounds_and_distinct_seeds(tiny_generate_cfg):
    plan = plan_objects(tiny_generate_cfg, toy_labels())
    assert len(plan) == 2 * len(CLASSES)
    assert all(COOCCURRENCE[p.background].get(p.cls, 0) > 0 for p in plan)
    assert len({p.seed for p in plan}) == len(plan)


def test_generate_writes_deterministic_shards(tmp_path, tiny_generator, tiny_generate_cfg):
    gdir = tmp_path / "gen"
    tiny_generator.save(gdir)
    out1, out2 = tmp_path / "a", tmp_path / "b"
    generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), out1)
    generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), out2)
    assert _digest(out1) == _digest(out2)
    samples = list(shards.read_shards(out1 / "objects"))
    assert len(samples) == 2 * len(CLASSES)
    key, m = samples[0]
    assert m["image.png"].shape == (32, 32, 3)
    assert set(np.unique(m["label.png"])) <= {0, CLASSES.index(m["meta.json"]["class"]) + 1}


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
    generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), tmp_path / "whole")

    with monkeypatch.context() as m:
        _interrupt_while_writing(m, "shard-00001.tar")
        with pytest.raises(KeyboardInterrupt):
            generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), out)
    # only whole files are left: the first shard and the stamps, no temporary file, no index
    assert _files(out) == ["objects/_fingerprint.txt", "objects/shard-00000.tar", "scenes/_fingerprint.txt"]
    first = (out / "objects" / "shard-00000.tar").stat()

    seeds = _count_sampled_seeds(monkeypatch)
    result = generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), out)
    assert result["written"] == {"objects": [1, 2], "scenes": [0]}
    chunks = plan_shards(plan_objects(tiny_generate_cfg, toy_labels()), tiny_generate_cfg.shard_size)
    assert sorted(seeds) == sorted(p.seed for p in chunks[1] + chunks[2] + plan_scenes(tiny_generate_cfg, toy_labels()))
    again = (out / "objects" / "shard-00000.tar").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert _digest(out) == _digest(tmp_path / "whole")


def test_changed_params_discard_stale_shards(tmp_path, tiny_generator, tiny_generate_cfg):
    gdir = tmp_path / "gen"
    tiny_generator.save(gdir)
    generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), tmp_path / "o")
    cfg = tiny_generate_cfg.model_copy(update={"per_class": 1})
    generate_dataset(cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), tmp_path / "o")
    assert len(list(shards.read_shards(tmp_path / "o" / "objects"))) == len(CLASSES)


def test_threshold_rules():
    m = np.zeros((10, 10))
    m[2:5, 2:5] = 1.0
    m = normalize01(m + 0.01 * np.random.default_rng(0).random((10, 10)))
    assert 0.05 < otsu_threshold(m) < 0.95
    assert threshold(m, "otsu").sum() == 9 and threshold(m, "fixed", 0.5).sum() == 9


def test_affinity_rule_gives_masks_from_the_generators_own_self_attention(tiny_generator, tiny_generate_cfg):
    from freemask.generate.dataset import attention_masks

    cfg = tiny_generate_cfg.model_copy(update={"threshold": tiny_generate_cfg.threshold.model_copy(update={"rule": "affinity"}),
                                              "refine": tiny_generate_cfg.refine.model_copy(update={"resolution": 16}),
                                              "max_timestep": 1000})
    plan = plan_objects(cfg, toy_labels())[:3]
    images, masks = attention_masks(tiny_generator, plan, cfg, toy_labels())
    assert images.shape == (3, 32, 32, 3) and masks.foreground.shape == (3, 32, 32) and not masks.ignore.any()
    grid = np.arange(0.05, 1.0, 0.05)
    for m, mask in zip(masks.maps, masks.foreground):  # every mask is the raw map cut at one grid threshold
        # in float32, as the rule cuts: a pixel at float32(tau) is above the float64 tau (on another CPU the
        # maps' last bits differ, and such a pixel may turn up)
        assert any(np.array_equal(mask, m > np.float32(tau)) for tau in grid)

    bad = cfg.model_copy(update={"refine": cfg.refine.model_copy(update={"resolution": 64})})
    with pytest.raises(ValueError, match=r"generate.refine.resolution=64.*\[8, 16, 32\]"):
        attention_masks(tiny_generator, plan, bad, toy_labels())


def _rule(cfg, rule, **update):
    return cfg.model_copy(update={"threshold": cfg.threshold.model_copy(update={"rule": rule}), "max_timestep": 1000,
                                  "refine": cfg.refine.model_copy(update={"resolution": 16}), **update})


def test_diffumask_rule_thresholds_each_class_on_its_own_resolutions(tiny_generator, tiny_generate_cfg):
    from freemask.attention.recorder import AttentionStore
    from freemask.attention.tokens import word_tokens
    from freemask.masks.rules import masks_from_store
    from freemask.diffusion.sampling import sample

    plan = [p for p in plan_objects(tiny_generate_cfg, toy_labels()) if p.cls in ("car", "boat")][:3]
    d = tiny_generate_cfg.diffumask
    dm = d.model_copy(update={"thresholds": {**d.thresholds, "car": 0.3, "boat": 0.7},
                              "resolutions": {**d.resolutions, "car": [8], "boat": [32, 16]}})
    cfg = _rule(tiny_generate_cfg, "diffumask", diffumask=dm)
    tokens = word_tokens(tiny_generator.tokenizer, [p.prompt for p in plan], [[p.cls] for p in plan])
    store = AttentionStore(tokens.index)
    sample(tiny_generator, [p.prompt for p in plan], [p.seed for p in plan], cfg.steps, cfg.guidance, store)
    out = masks_from_store(store, tokens, 32, cfg, [p.cls for p in plan])
    for b, p in enumerate(plan):
        res = dm.resolutions[p.cls]
        want = np.mean([normalize01(store.maps(32, [r])[b, 0].numpy()) for r in res], axis=0)
        assert np.allclose(out.maps[b], want, atol=1e-6)
        assert np.array_equal(out.foreground[b], want > dm.thresholds[p.cls])
    bad = cfg.model_copy(update={"diffumask": dm.model_copy(update={"resolutions": {**dm.resolutions, "car": [64]}})})
    with pytest.raises(ValueError, match=r"generate.diffumask.resolutions: no cross-attention recorded at \[64\]"):
        masks_from_store(store, tokens, 32, bad, [p.cls for p in plan])


def test_dataset_diffusion_rule_writes_ignored_pixels_as_255(tmp_path, tiny_generator, tiny_generate_cfg):
    cfg = _rule(tiny_generate_cfg, "dataset_diffusion", per_class=1, scenes_per_background=0)
    # a wide band, so the random-weight generator's maps surely leave some pixels undecided
    cfg = cfg.model_copy(update={"dataset_diffusion": cfg.dataset_diffusion.model_copy(update={"low": 0.2, "high": 0.8})})
    gdir = tmp_path / "gen"
    tiny_generator.save(gdir)
    generate_dataset(cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), tmp_path / "out")
    seen_ignore = False
    for _, m in shards.read_shards(tmp_path / "out" / "objects"):
        label, amap = m["label.png"], m["attention.png"] / 255.0
        cls = CLASSES.index(m["meta.json"]["class"]) + 1
        assert set(np.unique(label)) <= {0, cls, 255}
        # the stored map is the refined score: object >= high, ignored in [low, high)
        assert (amap[label == cls] >= 0.8 - 1 / 255).all() and (amap[label == 0] < 0.2 + 1 / 255).all()
        seen_ignore |= bool((label == 255).any())
    assert seen_ignore


def test_the_store_records_only_the_resolutions_the_rule_reads(tiny_generate_cfg):
    from freemask.attention.tokens import WordTokens
    from freemask.masks.rules import map_resolutions, new_store

    one = WordTokens(torch.tensor([[1]]), torch.ones(1, 1, 1))

    cfg = _rule(tiny_generate_cfg, "affinity", resolutions=[16, 8, 16])
    assert map_resolutions(cfg) == [8, 16]
    store = new_store(one, cfg)
    assert store.resolutions == {8, 16} and store.self_attention_resolution == 16
    d = cfg.diffumask
    dm = _rule(cfg, "diffumask", diffumask=d.model_copy(update={"resolutions": {**d.resolutions, "car": [8], "boat": [32]}}))
    assert map_resolutions(dm) == sorted({8, 32} | {r for c, rs in d.resolutions.items() if c not in ("car", "boat") for r in rs})
    assert new_store(one, dm).self_attention_resolution is None
