"""The toy analogs of the paper's Tables 2-4 and Figure 9: grouped and zero-shot scoring of the
toy classes, the S + R runs' real subset and schedule, and the report's layout of them."""
import numpy as np
import pytest

from freemask.labels import toy_labels
from freemask.metrics.evaluation import PROFILE_GROUPINGS, evaluate_predictions, grouping_for
from freemask.metrics.grouping import HUMAN_VEHICLE
from freemask.params import ParamsError, Finetune, Train, dump_defaults, validate
from freemask.reports.paper import figure9, retention_rows, table2, table3, table4
from freemask.segmenters.finetune import real_subset, schedule

NAMES = list(toy_labels().names)  # background, bird, aeroplane, balloon, ball, car, boat, tree, chair
BALLOON, BALL, CAR, BIRD = (NAMES.index(c) for c in ("balloon", "ball", "car", "bird"))


def test_each_profile_gets_its_own_grouping_and_params_override_it():
    assert grouping_for("cityscapes", None) is HUMAN_VEHICLE
    assert grouping_for("toy", None) is PROFILE_GROUPINGS["toy"]
    assert grouping_for("voc", None) is None
    assert grouping_for("toy", {"sky": ["bird", "balloon"]}).groups == {"sky": ("bird", "balloon")}


def test_the_disc_group_forgives_balloon_ball_confusion_and_nothing_else():
    gt = np.array([[BALLOON, BALLOON, BALL, BALL, CAR, CAR, BIRD, 0]], np.uint8)
    pred = np.array([[BALL, BALL, BALLOON, BALLOON, CAR, 0, BIRD, 0]], np.uint8)
    out = evaluate_predictions(pred, gt, NAMES, grouping_for("toy", None))
    assert out["per_class"]["balloon"] == out["per_class"]["ball"] == 0.0
    t3 = out["table3"]
    assert t3["per_group"]["disc"] == 1.0  # every disc pixel predicted as a disc
    assert t3["per_group"]["vehicle"] == pytest.approx(1 / 2)  # car: one of two pixels, the other background
    assert t3["mIoU"] == pytest.approx(3 / 4)
    assert "table4" not in out


def test_unseen_classes_add_the_zero_shot_layout():
    gt = np.array([[BALLOON, BALLOON, CAR, CAR]], np.uint8)
    pred = np.array([[BALLOON, 0, CAR, CAR]], np.uint8)
    t4 = evaluate_predictions(pred, gt, NAMES, unseen=["balloon"])["table4"]
    assert t4["unseen"] == ["balloon"] and t4["unseen_mIoU"] == pytest.approx(1 / 2)
    assert t4["seen_mIoU"] == pytest.approx(1.0) and t4["harmonic"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("groups, match", [
    ({"disc": ["balloon", "cat"]}, r"evaluate\.groups\.disc: 'cat' is not a class of profile 'toy'"),
    ({"a": ["car"], "b": ["car", "boat"]}, r"evaluate\.groups\.b: 'car' is in group 'a' too"),
    ({"a": []}, r"evaluate\.groups\.a: a group needs at least one class"),
])
def test_bad_groups_are_named_by_their_key(groups, match):
    d = dump_defaults()
    d["evaluate"]["groups"] = groups
    with pytest.raises(ParamsError, match=match):
        validate(d)


def test_the_real_subset_is_seeded_in_split_order_and_bounded():
    images = np.arange(50)[:, None, None, None].repeat(2, 1).astype(np.uint8)
    labels = images[..., 0]
    a, la = real_subset(images, labels, 10, seed=3)
    b, _ = real_subset(images, labels, 10, seed=3)
    c, _ = real_subset(images, labels, 10, seed=4)
    ids = a[:, 0, 0, 0].tolist()
    assert ids == b[:, 0, 0, 0].tolist() != c[:, 0, 0, 0].tolist()
    assert ids == sorted(set(ids)) and len(ids) == 10 and (la[:, 0, 0] == a[:, 0, 0, 0]).all()
    with pytest.raises(ParamsError, match=r"finetune\.real_images=51: the real train split has only 50"):
        real_subset(images, labels, 51, seed=0)


def test_both_runs_keep_the_architecture_and_take_the_finetune_schedule():
    train, ft = Train(lr=0.004), Finetune(steps=7, lr=0.0002, warmup_steps=2, eval_every=3, seed=5)
    tuned, fresh = schedule(train, ft, from_scratch=False), schedule(train, ft, from_scratch=True)
    assert (tuned.steps, tuned.lr, tuned.warmup_steps, tuned.eval_every, tuned.seed) == (7, 0.0002, 2, 3, 5)
    assert fresh.lr == 0.004 and fresh.model_dump(exclude={"lr"}) == tuned.model_dump(exclude={"lr"})
    assert tuned.model_dump(exclude={"steps", "lr", "warmup_steps", "eval_every", "seed"}) == \
        train.model_dump(exclude={"steps", "lr", "warmup_steps", "eval_every", "seed"})


def test_finetune_is_offset_by_the_replicate_seed():
    d = dump_defaults()
    d["seed"] = 2
    assert validate(d).replicated().finetune.seed == 2


def _summary(miou, per_class, unseen=False):
    s = {"mIoU": miou, "per_class": per_class,
         "table3": {"mIoU": miou, "per_group": {"vehicle": miou, "disc": miou / 2}, "background": 1.0}}
    if unseen:
        s["table4"] = {"seen_mIoU": 0.9, "unseen_mIoU": 0.3, "harmonic": 0.45, "unseen": ["balloon"]}
    return s


def _runs(unseen=False):
    evaluated = {"val": {"synthetic": _summary(0.8, {"balloon": 0.6}, unseen),
                         "upper_bound": _summary(0.9, {"balloon": 0.85}, unseen)}}
    finetuned = {"real_images": 100, "val": {"synthetic_plus_real": _summary(0.85, {"balloon": 0.7}, unseen),
                                             "real_subset": _summary(0.5, {"balloon": 0.2}, unseen)}}
    return evaluated, finetuned


def test_table2_puts_the_spread_beside_this_run_where_it_was_measured():
    spread = {"metrics": {"metrics/details/eval.json:val.synthetic.per_class.balloon":
                          {"mean": 0.667, "sd": 0.039, "n": 4}}}
    md = table2(*_runs(), spread, ["balloon"])
    assert "| S + R (100 real) | R only (100 real) |" in md
    assert "| balloon | 60.0 (66.7 ± 3.9) | 85.0 | 70.0 | 20.0 |" in md
    assert "| **mIoU** | 80.0 | 90.0 | 85.0 | 50.0 |" in md


def test_tables_3_and_4_lay_out_every_segmenter():
    assert "| disc | 40.0 | 45.0 | 42.5 | 25.0 |" in table3(*_runs())
    assert table4(*_runs()) is None
    md = table4(*_runs(unseen=True))
    assert md.startswith("Unseen: balloon.") and "| harmonic | 45.0 | 45.0 | 45.0 | 45.0 |" in md


def test_figure9_orders_the_retention_shares_and_draws_them(tmp_path):
    def group(params, mean, seeds):
        return {"params": params, "seeds": seeds, "metrics": {
            "metrics/filter.json:final_val_mIoU": {"mean": mean, "sd": 0.01, "n": len(seeds)},
            "metrics/filter.json:gain_over_round_0": {"mean": -0.02, "sd": 0.0, "n": len(seeds)}}}
    groups = [group({"active.retain": 1.0}, 0.85, [0]), group({}, 0.84, [0, 1]),
              group({"active.retain": 0.5}, 0.80, [0]), group({"compose.mode": "random"}, 0.1, [0])]
    rows = retention_rows(groups, default=0.7)
    assert [a for a, _ in rows] == [0.5, 0.7, 1.0]
    md = figure9(rows, tmp_path / "f9.png")
    assert md.splitlines()[2:] == ["| 0.5 | 0 | 80.0 ± 1.0 | -2.0 ± 0.0 |", "| 0.7 | 0, 1 | 84.0 ± 1.0 | -2.0 ± 0.0 |",
                                   "| 1 | 0 | 85.0 ± 1.0 | -2.0 ± 0.0 |"]
    assert (tmp_path / "f9.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
