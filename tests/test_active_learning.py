"""Adversarial active learning (Algorithm 1): scoring, top-alpha selection, the round loop on fakes,
seed separation between rounds, the report helpers, and end-to-end runs on the tiny toy world."""
import json

import numpy as np
import pytest

from freemask.active.loop import Samples, run
from freemask.active.report import plot_curves, rounds_table, sweep_table
from freemask.active.select import class_iou, n_kept, scores, select_top
from freemask.active.judge import KINDS, auc, catch_rate, corrupt
from freemask.active.rounds import FreshSamples, plan_round, round_seed, run_filter, write_fresh, write_pool, load_samples
from freemask.labels import toy_labels
from freemask.data import shards
from freemask.generate.plan import plan_objects
from freemask.params import Active, ParamsError, Train, dump_defaults, validate

TOY = toy_labels()

# ------------------------------------------------------------------------------------ scoring


def test_class_iou_is_the_iou_of_the_sample_class_with_ignored_pixels_skipped():
    pseudo = np.array([[3, 3, 3, 0],
                       [3, 255, 255, 0],
                       [0, 0, 0, 5]])
    pred = np.array([[3, 3, 0, 3],
                     [3, 3, 3, 0],
                     [0, 0, 3, 5]])
    # class 3: pseudo {(0,0),(0,1),(0,2),(1,0)}; pred outside the ignored (1,1),(1,2):
    # {(0,0),(0,1),(0,3),(1,0),(2,2)} -> intersection 3, union 6; class 5 elsewhere plays no part
    assert class_iou(pred, pseudo, 3) == pytest.approx(3 / 6)
    assert class_iou(pred, pseudo, 5) == 1.0


def test_empty_pseudo_mask_scores_zero_whatever_the_prediction():
    empty = np.zeros((4, 4), np.uint8)
    assert class_iou(empty, empty, 2) == 0.0  # both empty: no object to vouch for
    assert class_iou(np.full((4, 4), 2), empty, 2) == 0.0
    all_ignored = np.full((4, 4), 255, np.uint8)
    assert class_iou(np.full((4, 4), 2), all_ignored, 2) == 0.0
    with pytest.raises(ValueError, match="class id"):
        class_iou(empty, empty, 0)
    with pytest.raises(ValueError, match="shapes differ"):
        class_iou(empty, empty[:2], 1)


def test_scores_take_one_class_per_sample():
    pseudo = np.zeros((2, 2, 2), np.uint8)
    pseudo[0, 0] = 1
    pseudo[1, :] = 2
    pred = np.zeros_like(pseudo)
    pred[0, 0, 0] = 1
    pred[1, 0] = 2
    np.testing.assert_allclose(scores(pred, pseudo, [1, 2]), [0.5, 0.5])
    with pytest.raises(ValueError, match="1 classes"):
        scores(pred, pseudo, [1])


# ---------------------------------------------------------------------------------- selection


def test_top_share_is_exact_and_ties_go_by_key():
    keys = ["c", "a", "b", "d", "e"]
    vals = np.array([0.5, 0.9, 0.5, 0.1, 0.7])
    # round(0.6 * 5) = 3 kept: a (0.9), e (0.7), then of the tied b and c (0.5) the key b
    assert [keys[i] for i in select_top(keys, vals, 0.6)] == ["a", "e", "b"]
    perm = [4, 2, 0, 3, 1]
    assert [[keys[p] for p in perm][i] for i in select_top([keys[p] for p in perm], vals[perm], 0.6)] == ["a", "e", "b"]
    assert [keys[i] for i in select_top(keys, vals, 1.0)] == ["a", "e", "b", "c", "d"]


def test_kept_count_rounds_halves_up_and_alpha_one_keeps_all():
    assert [n_kept(10, a) for a in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)] == [5, 6, 7, 8, 9, 10]
    assert n_kept(5, 0.5) == 3 and n_kept(5, 0.7) == 4 and n_kept(3, 0.1) == 0
    with pytest.raises(ValueError, match="active.retain"):
        n_kept(5, 0.0)
    with pytest.raises(ValueError, match="NaN score"):
        select_top(["a", "b"], np.array([0.5, np.nan]), 0.5)
    with pytest.raises(ValueError, match="unique"):
        select_top(["a", "a"], np.array([0.5, 0.4]), 0.5)


# ------------------------------------------------------------------------------- loop on fakes

CLS = 1


def _fake_samples(keys: list[str], hits: list[int]) -> Samples:
    """4x4 samples whose pseudo-mask is 4 pixels of CLS; the image's red channel is the label the
    fake model predicts, overlapping ``hit`` of those 4 pixels (IoU = hit / (8 - hit))."""
    n = len(keys)
    labels = np.zeros((n, 4, 4), np.uint8)
    labels[:, 0, :] = CLS
    images = np.zeros((n, 4, 4, 3), np.uint8)
    for i, h in enumerate(hits):
        images[i, 0, :h, 0] = CLS
        images[i, 1, : 4 - h, 0] = CLS
    return Samples(keys, images, labels, [CLS] * n)


class Fakes:
    def __init__(self):
        self.trained, self.generated = [], []

    def generate(self, r):
        self.generated.append(r)
        return _fake_samples([f"r{r}_{i}" for i in range(5)], [4, 0, 2, 3, 2])  # IoU 1, 0, 1/3, 3/5, 1/3

    def train(self, pool, r, start):
        self.trained.append((r, list(pool.keys), start))
        return f"model{r}"

    @staticmethod
    def predict(model, images):
        assert model.startswith("model")
        return images[..., 0]


def test_loop_keeps_the_top_share_of_fresh_samples_and_records_each_round():
    f = Fakes()
    initial = Samples(["d0_a", "d0_b"], np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.uint8))
    res = run(initial, f.generate, f.train, f.predict, rounds=2, retain=0.6, finetune=True,
              evaluate=lambda m: 0.1 * (1 + int(m[-1])), progress=False)
    assert f.generated == [1, 2]
    assert res.kept == {1: ["r1_0", "r1_3", "r1_2"], 2: ["r2_0", "r2_3", "r2_2"]}  # tie r*_2 / r*_4 -> key
    assert [t[0] for t in f.trained] == [0, 1, 2]
    assert f.trained[0][1] == ["d0_a", "d0_b"]
    assert f.trained[2][1] == ["d0_a", "d0_b", "r1_0", "r1_3", "r1_2", "r2_0", "r2_3", "r2_2"]
    assert [t[2] for t in f.trained] == [None, "model0", "model1"]  # fine-tuning from the last round
    assert res.model == "model2" and res.pool.keys == f.trained[2][1]
    r0, r1 = res.rounds[0], res.rounds[1]
    assert r0 == {"round": 0, "pool": 2, "val_mIoU": 0.1}
    assert r1["pool"] == 5 and r1["generated"] == 5 and r1["kept"] == 3 and r1["kept_share"] == 0.6
    assert r1["score"] == {"mean": round((1 + 0 + 1 / 3 + 3 / 5 + 1 / 3) / 5, 6), "min": 0.0,
                           "median": round(1 / 3, 6), "max": 1.0}
    assert r1["threshold"] == round(1 / 3, 6) and r1["kept_score"]["min"] == round(1 / 3, 6)
    assert [r["val_mIoU"] for r in res.rounds] == [0.1, 0.2, 0.3]


def test_from_scratch_and_alpha_one_and_zero_rounds():
    f = Fakes()
    initial = Samples(["d0"], np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8))
    res = run(initial, f.generate, f.train, f.predict, rounds=1, retain=1.0, finetune=False, progress=False)
    assert [t[2] for t in f.trained] == [None, None]
    assert sorted(res.kept[1]) == [f"r1_{i}" for i in range(5)] and res.rounds[1]["kept_share"] == 1.0
    assert "val_mIoU" not in res.rounds[1]
    res0 = run(initial, Fakes().generate, Fakes().train, Fakes.predict, rounds=0, retain=0.7, finetune=True,
               progress=False)
    assert res0.kept == {} and [r["round"] for r in res0.rounds] == [0]


def test_loop_refuses_fresh_samples_without_classes_or_already_pooled():
    f = Fakes()
    initial = Samples(["r1_0"], np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="already in the pool"):
        run(initial, f.generate, f.train, f.predict, rounds=1, retain=1.0, finetune=True, progress=False)
    s = _fake_samples(["x"], [1])
    bad = Samples(s.keys, s.images, s.labels)
    with pytest.raises(ValueError, match="one class each"):
        run(initial, lambda r: bad, f.train, f.predict, rounds=1, retain=1.0, finetune=True, progress=False)


# ------------------------------------------------------------------------------ seeds and params


def test_rounds_draw_disjoint_seeds_and_keys(tiny_generate_cfg):
    active = Active(per_class=3)
    plans = {r: plan_round(tiny_generate_cfg, active, r, TOY) for r in range(1, 5)}
    base = {p.seed for p in plan_objects(tiny_generate_cfg, toy_labels())}
    seen = set(base)
    for r, plan in plans.items():
        seeds = {p.seed for p in plan}
        assert len(seeds) == len(plan) == 3 * 8
        assert not seeds & seen, f"round {r} repeats a seed"
        seen |= seeds
        assert all(p.key.startswith(f"r{r:02d}_") for p in plan)
    assert len({round_seed(0, r) for r in range(100)}) == 100
    assert plan_round(tiny_generate_cfg, active, 2, TOY) == plans[2]  # a round's plan depends on params alone
    assert plan_round(tiny_generate_cfg, Active(per_class=3, seed=1), 2, TOY) != plans[2]


def test_fresh_samples_refuse_a_round_that_repeats_a_sample(tiny_generate_cfg):
    active = Active(per_class=1)
    fresh = FreshSamples(None, tiny_generate_cfg, active, TOY, used=plan_round(tiny_generate_cfg, active, 1, TOY))
    with pytest.raises(ValueError, match="active.seed=0 repeat"):
        fresh(1)


def test_active_params_are_validated_by_dotted_key():
    data = dump_defaults()
    assert data["active"] == {"seed": 0, "threads": 2, "rounds": 1, "per_class": 10, "retain": 0.7,
                              "finetune": True, "round_steps": 150, "round_lr": 0.0003, "bad_below": 0.5,
                              "corrupt_share": 0.3}
    data["active"]["retain"] = 1.5
    data["active"]["round"] = 2
    with pytest.raises(ParamsError) as err:
        validate(data)
    assert "active.retain: Input should be less than or equal to 1" in str(err.value)
    assert "active.round: unknown key" in str(err.value)


# ------------------------------------------------------------------------------------- reports


def test_report_table_and_curves(tmp_path):
    rounds = [{"round": 0, "pool": 2, "val_mIoU": 0.4},
              {"round": 1, "pool": 5, "generated": 5, "kept": 3, "kept_share": 0.6, "threshold": 0.3333,
               "score": {"mean": 0.45, "min": 0.0, "median": 0.33, "max": 1.0}, "val_mIoU": 0.5}]
    table = rounds_table(rounds)
    assert "| 0 | 2 | – | – | – | – | – | –––" in table
    assert "| 1 | 5 | 5 | 3 | 0.60 | 0.450 | 0.330 | 0.000–1.000 | 0.333 | 0.500 |" in table
    sweep = {0.5: rounds, 0.7: [rounds[0], {**rounds[1], "val_mIoU": 0.55}]}
    st = sweep_table(sweep)
    assert "| 0.50 | 1 | 5 | 0.400 | 0.500 | 0.100 |" in st and "| 0.70 | 1 | 5 | 0.400 | 0.550 | 0.150 |" in st
    plot_curves({str(a): rs for a, rs in sweep.items()}, tmp_path / "sweep.png", sweep=True)
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no val_mIoU"):
        plot_curves({"x": [{"round": 0, "pool": 1}]}, tmp_path / "x.png")


# ------------------------------------------------------------------------ real toy-world wiring

TINY_TRAIN = dict(steps=3, batch_size=4, lr=2e-3, warmup_steps=1, input_size=32, patch_size=2, eval_every=3,
                  val_fraction=0.2, train_num_points=64, threads=1, scale_prob=0.0)


def test_the_filter_runs_end_to_end_deterministically(tmp_path, tiny_generator, tiny_generate_cfg):
    gdir = tmp_path / "generator"
    tiny_generator.save(gdir)
    active = Active(rounds=2, per_class=1, retain=0.5, round_steps=2, threads=1)
    train = Train(**TINY_TRAIN)
    # D0: the generate stage's own plan at a smaller size; val: a few more fresh samples
    initial = FreshSamples(tiny_generator, tiny_generate_cfg, active, TOY)(0)
    val_set = FreshSamples(tiny_generator, tiny_generate_cfg, Active(per_class=1, seed=99), TOY)(7)
    used = plan_round(tiny_generate_cfg, active, 0, TOY)

    outs = []
    for k in range(2):
        res, trainer = run_filter(active, tiny_generate_cfg, train, TOY, gdir, initial, tmp_path / f"work{k}",
                               val=(val_set.images, val_set.labels), used=used, progress=False)
        outs.append(res)
    a, b = outs
    assert [len(v) for v in a.kept.values()] == [4, 4]  # round(0.5 * 8 fresh samples)
    assert all(k.startswith(f"r{r:02d}_") for r, ks in a.kept.items() for k in ks)
    assert a.kept == b.kept
    assert json.dumps(a.rounds) == json.dumps(b.rounds)
    assert [r["pool"] for r in a.rounds] == [8, 12, 16]
    assert all(0.0 <= r["val_mIoU"] <= 1.0 for r in a.rounds)
    assert sorted(p.name for p in (tmp_path / "work0").iterdir()) == ["round_00", "round_01", "round_02"]
    assert trainer.stats[1]["steps"] == 2 and trainer.stats[0]["steps"] == 3

    # judged against an oracle segmenter (here round 0's model); every fresh sample written with its score
    fresh = []
    judged, _ = run_filter(active, tiny_generate_cfg, train, TOY, gdir, initial, tmp_path / "work_j",
                        val=(val_set.images, val_set.labels), used=used, progress=False,
                        oracle_model=tmp_path / "work0" / "round_00", fresh_out=fresh)
    assert json.dumps([{k: v for k, v in r.items() if k != "judge"} for r in judged.rounds]) == json.dumps(a.rounds)
    j = judged.rounds[1]["judge"]
    assert len(j["oracle_iou_per_sample"]) == 8 and j["catch"]["spoilt"] == 2 and j["catch"]["dropped"] == 4
    write_fresh(fresh, judged.rounds, tmp_path / "fresh", shard_size=5, names=TOY.names)
    metas = [m["meta.json"] for _, m in shards.read_shards(tmp_path / "fresh")]
    assert len(metas) == 16 and sum(m["kept"] for m in metas) == 8
    assert {m["round"] for m in metas} == {1, 2} and all(0 <= m["score"] <= 1 for m in metas)
    assert metas[0]["oracle_iou"] == j["oracle_iou_per_sample"][0]

    write_pool(a.pool, tmp_path / "pool", shard_size=5)
    back = load_samples(tmp_path / "pool", names=TOY.names, prefix="x")
    assert len(back) == 16
    np.testing.assert_array_equal(back.labels, a.pool.labels)


def test_train_segmenter_fine_tunes_from_a_saved_model(tmp_path):
    import torch

    from freemask.segmenters.mask2former import build_model, load_segmenter, train_segmenter

    images = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    labels = np.zeros((4, 16, 16), np.uint8)
    labels[:, 4:10, 4:10] = 1
    cfg = Train(**{**TINY_TRAIN, "steps": 1, "eval_every": 1})
    train_segmenter(cfg, images, labels, 3, tmp_path / "a", progress=False)
    start = load_segmenter(tmp_path / "a").state_dict()
    tuned = cfg.model_copy(update={"seed": 5, "lr": 1e-12})
    train_segmenter(tuned, images, labels, 3, tmp_path / "b", progress=False, init_from=tmp_path / "a")
    after, fresh = load_segmenter(tmp_path / "b").state_dict(), build_model(3, tuned).state_dict()
    assert all(torch.allclose(start[k], after[k], atol=1e-6) for k in start)
    assert any(not torch.allclose(fresh[k], after[k]) for k in fresh)
    with pytest.raises(ValueError, match="has 3 classes, the data 4"):
        train_segmenter(cfg, images, labels, 4, tmp_path / "c", progress=False, init_from=tmp_path / "a")
    with pytest.raises(ValueError, match="train.input_size is 64"):
        train_segmenter(cfg.model_copy(update={"input_size": 64}), images, labels, 3, tmp_path / "c",
                        progress=False, init_from=tmp_path / "a")


def test_fresh_samples_cache_gives_the_same_samples_without_sampling(tmp_path, tiny_generator, tiny_generate_cfg,
                                                                     monkeypatch):
    gdir = tmp_path / "generator"
    tiny_generator.save(gdir)
    active = Active(per_class=1)
    made = FreshSamples(tiny_generator, tiny_generate_cfg, active, TOY, cache_dir=tmp_path / "cache", generator_dir=gdir)(1)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_sampling(self, plan):
        raise AssertionError("sampled although the cache holds the round")

    monkeypatch.setattr(FreshSamples, "_make", no_sampling)
    read = FreshSamples(tiny_generator, tiny_generate_cfg, active, TOY, cache_dir=tmp_path / "cache", generator_dir=gdir)(1)
    assert read.keys == made.keys and read.classes == made.classes
    np.testing.assert_array_equal(read.images, made.images)
    np.testing.assert_array_equal(read.labels, made.labels)
    # other generate params, another round or another generator is another entry, never a stale read
    other_cfg = tiny_generate_cfg.model_copy(update={"steps": tiny_generate_cfg.steps + 1})
    for cfg, round_ in ((other_cfg, 1), (tiny_generate_cfg, 2)):
        with pytest.raises(AssertionError, match="sampled"):
            FreshSamples(tiny_generator, cfg, active, TOY, cache_dir=tmp_path / "cache", generator_dir=gdir)(round_)
    (gdir / "extra.txt").write_text("retrained")
    with pytest.raises(AssertionError, match="sampled"):
        FreshSamples(tiny_generator, tiny_generate_cfg, active, TOY, cache_dir=tmp_path / "cache", generator_dir=gdir)(1)
    with pytest.raises(ValueError, match="generator directory"):
        FreshSamples(tiny_generator, tiny_generate_cfg, active, TOY, cache_dir=tmp_path / "cache")


def test_round_zero_takes_the_given_initial_model_and_round_one_fine_tunes_it(tmp_path, tiny_generator,
                                                                             tiny_generate_cfg):
    from freemask.segmenters.mask2former import train_segmenter

    gdir = tmp_path / "generator"
    tiny_generator.save(gdir)
    active = Active(rounds=1, per_class=1, retain=0.5, round_steps=2, threads=1)
    train = Train(**TINY_TRAIN)
    initial = FreshSamples(tiny_generator, tiny_generate_cfg, active, TOY)(0)
    train_segmenter(train, initial.images, initial.labels, 9, tmp_path / "d0_model", progress=False)
    res, trainer = run_filter(active, tiny_generate_cfg, train, TOY, gdir, initial, tmp_path / "work",
                           used=plan_round(tiny_generate_cfg, active, 0, TOY), progress=False,
                           initial_model=tmp_path / "d0_model")
    assert trainer.stats[0] == {"initial_model": str(tmp_path / "d0_model")}
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["round_01"]  # round 0 not trained again
    assert trainer.stats[1]["steps"] == 2 and [r["pool"] for r in res.rounds] == [8, 12]


# ------------------------------------------------------------------------- judging the filter


def test_auc_is_the_chance_that_a_bad_sample_scores_below_a_good_one():
    assert auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 1.0
    assert auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 0.0
    assert auc([0.5, 0.5, 0.5], [True, False, False]) == 0.5  # ties count half
    assert auc([0.3, 0.1, 0.6, 0.2], [True, False, False, True]) == 0.5  # bad 0.3, 0.2 vs good 0.1, 0.6
    assert auc([0.1, 0.2], [False, False]) is None


def _squares(n, cls=2, size=12):
    labels = np.zeros((n, size, size), np.uint8)
    labels[:, 3:9, 3:9] = cls
    labels[:, 3, 3:9] = 255  # an undecided row
    return labels


def test_corrupt_spoils_the_share_asked_each_kind_in_turn():
    labels = _squares(10)
    out, claims, spoilt, how = corrupt(labels, [2] * 10, 0.3, 5, np.random.default_rng(0))
    assert spoilt.sum() == 3 and sorted(h for h in how if h) == sorted(KINDS)
    assert np.array_equal(out[~spoilt], labels[~spoilt]) and claims.count(2) == 9
    for i, kind in enumerate(how):
        if not kind:
            continue
        before, after = labels[i] == 2, out[i] == claims[i]
        assert (out[i] == 255).sum() == (labels[i] == 255).sum()  # undecided stays undecided
        if kind == "swap":
            assert claims[i] != 2 and np.array_equal(after, before)
        elif kind == "erode":
            assert claims[i] == 2 and 0 < after.sum() <= before.sum() / 2 and not (after & ~before).any()
        else:  # shifted by half its side: most of it has left its place
            assert claims[i] == 2 and (after & before).sum() <= before.sum() / 2
    again = corrupt(labels, [2] * 10, 0.3, 5, np.random.default_rng(0))
    assert np.array_equal(again[0], out) and again[3] == how
    assert not corrupt(labels, [2] * 10, 0.0, 5, np.random.default_rng(0))[2].any()


def test_catch_rate_compares_the_dropped_share_with_the_spoilt_samples():
    keys = [f"k{i}" for i in range(10)]
    values = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.95, 0.3, 0.85, 0.75, 0.65])  # drops k1, k3, k6 at retain 0.7
    spoilt = np.zeros(10, bool)
    spoilt[[1, 3, 4]] = True
    how = [""] * 10
    how[1], how[3], how[4] = "shift", "erode", "swap"
    c = catch_rate(values, keys, spoilt, how, 0.7)
    assert c["dropped"] == 3 and c["spoilt"] == 3
    assert c["precision"] == round(2 / 3, 6) and c["recall"] == round(2 / 3, 6)
    assert (c["recall_shift"], c["recall_erode"], c["recall_swap"]) == (1.0, 1.0, 0.0)


def test_loop_hands_each_round_to_the_judge_and_collects_the_fresh_samples():
    f = Fakes()
    initial = Samples(["d0"], np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8))
    seen, fresh = [], []

    def judge(r, samples, preds, values):
        seen.append((r, list(samples.keys), preds.shape, values.round(3).tolist()))
        return {"round_seen": r}

    res = run(initial, f.generate, f.train, f.predict, rounds=2, retain=0.6, finetune=True, judge=judge,
              progress=False, fresh_out=fresh)
    assert [s[0] for s in seen] == [1, 2] and seen[0][2] == (5, 4, 4)
    assert seen[0][3] == [1.0, 0.0, 0.333, 0.6, 0.333]
    assert [r.get("judge") for r in res.rounds] == [None, {"round_seen": 1}, {"round_seen": 2}]
    assert [(r, list(s.keys), idx) for r, s, _, idx in fresh][0] == (1, [f"r1_{i}" for i in range(5)], [0, 3, 2])


def test_rounds_after_round_zero_train_at_active_round_lr(tmp_path, monkeypatch):
    from freemask.active import rounds

    seen = {}

    def fake_train(cfg, images, labels, n, out, **kw):
        seen[out.name] = (cfg.steps, cfg.lr)
        return {}

    monkeypatch.setattr(rounds, "train_segmenter", fake_train)
    monkeypatch.setattr(rounds, "load_segmenter", lambda path: object())
    pool = Samples(["a"], np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8))
    for round_lr, want in ((None, 3e-3), (3e-4, 3e-4)):
        trainer = rounds.Trainer(Train(lr=3e-3), Active(round_steps=7, round_lr=round_lr), TOY, tmp_path / str(round_lr))
        first = trainer(pool, 0, None)
        trainer(pool, 1, first)
        assert seen["round_00"] == (Train().steps, 3e-3) and seen["round_01"] == (7, want)
