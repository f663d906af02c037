"""The mask-quality table: every rule on one recording, the assess stage's recordings, the report."""
import numpy as np

from freemask.labels import toy_labels
import pytest

from freemask.assess.generator import mask_ious, noised_renders, record_generated, record_noised_renders, stored_object_masks
from freemask.generate.plan import plan_objects
from freemask.assess.mask_quality import RULES, MaskSetting, RuleScores, mask_quality_table, mask_settings
from freemask.masks.rules import masks_from_recorded, masks_from_store
from freemask.metrics.segmentation import mask_iou
from freemask.reports.tables import mask_quality_tables
from freemask.world.spec import CLASSES

SUBSETS = [[32], [16], [32, 16, 8]]


@pytest.fixture
def gcfg(tiny_generate_cfg):
    # self-attention at 16 keeps the tiny recordings small; a wide band so the tiny generator's
    # maps surely leave pixels undecided
    return tiny_generate_cfg.model_copy(update={
        "max_timestep": 1000, "batch_size": 3,
        "refine": tiny_generate_cfg.refine.model_copy(update={"resolution": 16}),
        "dataset_diffusion": tiny_generate_cfg.dataset_diffusion.model_copy(update={"low": 0.2, "high": 0.8})})


@pytest.fixture
def recorded(tiny_generator, gcfg):
    return list(record_generated(tiny_generator, gcfg, 1))


def test_settings_cover_every_rule_and_subset_and_diffumask_on_its_own_resolutions():
    s = mask_settings(SUBSETS)
    assert len(s) == len(RULES) * len(SUBSETS) + 1
    assert {(x.rule, x.resolutions) for x in s} >= {("fixed", (16,)), ("dataset_diffusion", (32, 16, 8)), ("diffumask", None)}
    with pytest.raises(ValueError, match="unknown rule 'median'"):
        MaskSetting("median", (32,))
    with pytest.raises(ValueError, match="no per-class resolutions"):
        MaskSetting("otsu", None)


def test_a_setting_changes_only_the_rule_and_the_resolutions(gcfg):
    cfg = MaskSetting("diffumask", (16, 8)).config(gcfg)
    assert cfg.threshold.rule == "diffumask" and set(map(tuple, cfg.diffumask.resolutions.values())) == {(16, 8)}
    assert cfg.diffumask.thresholds == gcfg.diffumask.thresholds and cfg.resolutions == gcfg.resolutions
    cfg = MaskSetting("affinity", (8,)).config(gcfg)
    assert cfg.resolutions == [8] and cfg.refine == gcfg.refine and cfg.threshold.value == gcfg.threshold.value
    assert MaskSetting("diffumask", None).config(gcfg).diffumask == gcfg.diffumask


def test_regenerated_samples_are_the_generate_stages_first_per_class(gcfg, recorded):
    full = {p.key: p for p in plan_objects(gcfg, toy_labels())}  # per_class = 2
    batches = [batch for batch, _, _ in recorded]
    assert [len(b) for b in batches] == [3, 3, 2]  # generate.batch_size batches of 8 samples
    again = [p for b in batches for p in b]
    assert [p.key for p in again] == [f"{c}_00000" for c in CLASSES]
    assert all(full[p.key] == p for p in again)  # same prompt, background and seed as the stage's


def test_every_row_is_what_masks_from_store_gives_under_that_rule(gcfg, recorded):
    batch, images, rec = recorded[0]
    classes = [p.cls for p in batch]
    reference = rec.maps([32], "ref") > 0.3
    scores = RuleScores(mask_settings(SUBSETS), gcfg)
    scores.add(rec, classes, reference)
    assert rec.transition(gcfg.refine.beta, gcfg) is rec.transition(gcfg.refine.beta, gcfg)  # computed once
    for setting, cfg, ious, ignored in zip(scores.settings, scores.configs, scores.iou, scores.ignored):
        m = masks_from_store(rec.store, rec.tokens, images.shape[1], cfg, classes)  # a fresh recording view: nothing cached
        again = masks_from_recorded(rec, cfg, classes)  # both walk the 3 images as one piece: exact
        assert np.array_equal(m.foreground, again.foreground) and np.array_equal(m.ignore, again.ignore), setting
        want = [mask_iou(f, r, i) for f, r, i in zip(m.foreground, reference, m.ignore)]
        assert np.allclose(ious[0], want) and np.allclose(ignored[0], m.ignore.mean((1, 2)))
        assert ignored[0].any() == (setting.rule == "dataset_diffusion")


@pytest.mark.parametrize("rule", ["affinity", "dataset_diffusion"])
def test_transitions_made_an_image_at_a_time_give_the_same_masks(gcfg, recorded, monkeypatch, rule):
    """masks_from_store drops each piece of transition matrices after use (flat memory in the batch
    size); with pieces of one image the masks are those of the whole batch's kept matrices."""
    import freemask.masks.rules as masking
    batch, images, rec = recorded[0]
    classes, cfg = [p.cls for p in batch], gcfg.model_copy(update={"threshold": gcfg.threshold.model_copy(update={"rule": rule})})
    monkeypatch.setattr(masking, "TRANSITION_CHUNK_BYTES", 1)
    pieces = masking.RecordedAttention(rec.store, images.shape[1], rec.tokens, keep_transitions=False)
    assert [rows for rows, _ in pieces.transitions(1.0, cfg)] == [slice(i, i + 1) for i in range(len(batch))]
    chunked = masks_from_store(rec.store, rec.tokens, images.shape[1], cfg, classes)
    whole = masks_from_recorded(rec, cfg, classes)
    # a one-image product takes BLAS's matrix-vector path: the refined maps may differ in the last bit
    assert np.allclose(chunked.maps, whole.maps, rtol=0, atol=1e-6)
    # so a pixel within rounding of a threshold could flip on another CPU (none is near one here: each pixel's
    # walked foreground and background scores are 0.25 apart, dataset_diffusion's refined scores 7e-5 from its
    # band); a wrong image's maps (and under dataset_diffusion its transitions) change far more than 0.1 % of pixels
    for a, b in ((chunked.foreground, whole.foreground), (chunked.ignore, whole.ignore)):
        assert (a == b).mean() >= 0.999
    assert not pieces._transitions  # nothing kept


def test_learned_affinity_rows_walk_on_the_nets_affinities_of_the_recorded_images(gcfg, recorded):
    """A learned row is the affinity rule with the net's affinities of the images in place of the
    self-attention, the maps and the walk unchanged; without the net or the images it is an error."""
    import torch

    from freemask.masks.affinity_net import AffinityNet, NetShape, dense_affinity
    torch.manual_seed(0)
    net = AffinityNet(NetShape(features=4, width=8, radius=3))
    batch, images, rec = recorded[0]
    classes = [p.cls for p in batch]
    settings = mask_settings([[32]], learned=True)
    assert [(s.rule, s.affinity) for s in settings if s.rule == "affinity"] == [("affinity", "self_attention"),
                                                                                ("affinity", "learned")]
    k = next(i for i, s in enumerate(settings) if s.affinity == "learned")
    scores = RuleScores(settings, gcfg, net)
    reference = rec.maps([32], "ref") > 0.3
    scores.add(rec, classes, reference, images)
    learned = rec.with_affinity(dense_affinity(net, images, gcfg.refine.resolution))
    want = masks_from_recorded(learned, scores.configs[k], classes)
    assert np.allclose(scores.iou[k][0], [mask_iou(f, r) for f, r in zip(want.foreground, reference)])
    beta = gcfg.refine.beta
    assert not torch.equal(learned.transition(beta, gcfg), rec.transition(beta, gcfg))  # other affinities
    assert np.array_equal(learned.maps([32], "x"), rec.maps([32], "x"))
    assert "learned affinities" in settings[k].rule_label(gcfg)
    with pytest.raises(ValueError, match="need the affinity net"):
        RuleScores(settings, gcfg)
    with pytest.raises(ValueError, match="need the 3 recorded images"):
        scores.add(rec, classes, reference)
    with pytest.raises(ValueError, match="refine the affinity rule"):
        MaskSetting("otsu", (32,), "learned")


def test_table_rows_carry_iou_and_ignored_share_per_class(gcfg, recorded, tiny_generator):
    settings = mask_settings(SUBSETS)
    on_gen, on_ren = RuleScores(settings, gcfg), RuleScores(settings, gcfg)
    for batch, _, rec in recorded:
        on_gen.add(rec, [p.cls for p in batch], rec.maps([16], "ref") > 0.5)
    images, truths, classes, prompts = noised_renders(1, 0, 32)
    for sl, rec in record_noised_renders(tiny_generator, images, prompts, classes, [50, 300], 0, 16, 5):
        on_ren.add(rec, classes[sl], truths[sl])
    table = mask_quality_table(on_gen, on_ren)
    assert table["n_generated"] == table["n_noised_renders"] == len(CLASSES)
    assert len(table["rows"]) == len(settings)
    dd = next(r for r in table["rows"] if r["rule"] == "dataset_diffusion")
    assert dd["setting"] == "dataset_diffusion (tau 4, ignore [0.2, 0.8))" and dd["resolutions"] == "32"
    for row in table["rows"]:
        for ref in ("vs_oracle_on_generated", "vs_truth_on_noised_renders"):
            iou, ign = row[ref]["iou"], row[ref]["ignored_share"]
            assert list(iou["per_class"]) == list(CLASSES) and 0 <= iou["mean"] <= 1
            assert (ign["mean"] > 0) == (row["rule"] == "dataset_diffusion")
    md = mask_quality_tables(table, list(CLASSES))
    assert md.count("### Mask IoU") == 2 and md.count("| diffumask (per-class thresholds) | per class |") == 2
    assert "| fixed 0.5 | 32+16+8 |" in md
    with pytest.raises(ValueError, match="different settings"):
        mask_quality_table(on_gen, RuleScores(settings[:2], gcfg))


def test_noised_renders_show_objects_where_the_world_does_unless_any_background_is_asked():
    from freemask.world.spec import COOCCURRENCE

    def backgrounds(kind):
        _, _, classes, prompts = noised_renders(12, 0, 32, kind)
        return [(c, next(b for b in COOCCURRENCE if p.endswith(f" {b}"))) for c, p in zip(classes, prompts)]

    world, anywhere = backgrounds("world"), backgrounds("any")
    assert all(COOCCURRENCE[b].get(c, 0) > 0 for c, b in world)
    assert sum(COOCCURRENCE[b].get(c, 0) == 0 for c, b in anywhere) > len(anywhere) / 3
    with pytest.raises(ValueError, match="render backgrounds must be one of"):
        noised_renders(1, 0, 32, "plausible")


def test_noised_render_recording_does_not_depend_on_the_batch_size(tiny_generator):
    images, _, classes, prompts = noised_renders(1, 3, 32)
    a = np.concatenate([rec.raw_maps([16], "x") for _, rec in record_noised_renders(
        tiny_generator, images, prompts, classes, [100], 3, 16, 3)])
    b = np.concatenate([rec.raw_maps([16], "x") for _, rec in record_noised_renders(
        tiny_generator, images, prompts, classes, [100], 3, 16, 8)])
    assert np.allclose(a, b, atol=1e-6)


def test_stored_labels_score_ignored_pixels_out():
    labels = np.zeros((1, 4, 4), np.uint8)
    labels[0, :2, :2] = 3
    labels[0, 2, :2] = 255
    truth = np.zeros((1, 4, 4), bool)
    truth[0, :3, :2] = True  # the truth covers the ignored row too
    m = stored_object_masks(labels)
    assert m.foreground.sum() == 4 and m.ignore.sum() == 2
    assert mask_ious(m, truth)[0] == 1.0  # counting 255 as background would give 4 / 6


def test_regenerated_images_match_the_stored_ones(tmp_path, tiny_generator, gcfg, recorded):
    from freemask.data import shards
    from freemask.generate.dataset import generate_dataset

    cfg = gcfg.model_copy(update={"scenes_per_background": 0, "batch_size": 5})  # other batches than `recorded`
    tiny_generator.save(tmp_path / "gen")
    generate_dataset(cfg.model_copy(update={"generator": str(tmp_path / "gen")}), toy_labels(), tmp_path / "out")
    stored = dict(shards.read_shards(tmp_path / "out" / "objects"))
    for batch, images, _ in recorded:
        for p, img in zip(batch, images):
            diff = np.abs(stored[p.key]["image.png"].astype(int) - img.astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99, p.key  # float rounding across batch layouts at most


def test_report_renders_the_mask_quality_section():
    from freemask.reports.tables import spine_report

    pc = lambda v: {"mean": v, "per_class": {"bird": v, "car": v}}  # noqa: E731
    row = lambda rule, res, iou, ign: {"rule": rule, "setting": rule, "resolutions": res,  # noqa: E731
                                       "vs_oracle_on_generated": {"iou": pc(iou), "ignored_share": pc(ign)},
                                       "vs_truth_on_noised_renders": {"iou": pc(iou / 2), "ignored_share": pc(ign)}}
    quality = {"classifier_accuracy_on_generated": pc(0.9), "attention_iou_vs_oracle_on_generated": pc(0.7),
               "attention_ignored_share_on_generated": pc(0.0), "attention_iou_vs_truth_on_noised_renders": pc(0.8),
               "attention_iou_vs_truth_on_noised_renders_any_background": pc(0.6),
               "best_fixed_threshold_vs_oracle_on_generated": {"threshold": 0.35, **pc(0.65)},
               "best_fixed_threshold_vs_truth_on_noised_renders": {"threshold": 0.3, **pc(0.75)},
               "mask_quality": {"n_generated": 2, "n_noised_renders": 4,
                                "rows": [row("otsu", "32", 0.6, 0.0), row("dataset_diffusion", "32+16", 0.8, 0.125)]}}
    split = {"synthetic_mIoU": 0.5, "upper_bound_mIoU": 0.9, "ratio": 0.556}
    ev = {"val": split, "val_raw": {**split, "synthetic_mIoU": 0.6, "ratio": 0.667}, "fresh_world_val": split}
    per = {"synthetic": {"per_class": {"bird": 0.4}}, "upper_bound": {"per_class": {"bird": 0.8}}}
    details = {"val": per, "val_raw": per, "fresh_world_val": per}
    key = "metrics/eval.json:val.synthetic_mIoU"
    spread = {"baseline_rev": "abcdef0123", "groups": [{"params": {}, "seeds": [0, 1, 2], "runs": ["baseline", "a", "b"],
                                                        "metrics": {key: {"mean": 0.52, "sd": 0.013, "n": 3}}}]}
    md = spine_report(ev, details, quality, spread, ["bird", "car"])
    assert "Synthetic only: generated objects + composition by background." in md
    assert "| toy val, as stored (JPEG q95, 4:2:0) | 50.0 | 90.0 | 0.556 |" in md
    assert "| toy val, as rendered (lossless) | 60.0 | 90.0 | 0.667 |" in md
    assert "## Seed spread (mean ± sd over 3 runs, seeds [0, 1, 2], of commit abcdef0 and its experiments)" in md
    assert "| eval: val.synthetic_mIoU | 0.520 ± 0.013 |" in md
    assert "generated objects + random composition" in spine_report(ev, details, quality, spread, ["bird", "car"], "random")
    from typing import get_args

    from freemask.params import Compose
    for mode in get_args(Compose.model_fields["mode"].annotation):  # every compose.mode has its line
        spine_report(ev, details, quality, spread, ["bird", "car"], mode)
    assert "## Mask quality by rule and attention resolution" in md
    assert "| dataset_diffusion | 32+16 | 80.0 | 80.0 | **80.0** | 12.5 |" in md
    assert "| dataset_diffusion | 32+16 | 40.0 | 40.0 | **40.0** | 12.5 |" in md  # the noised-render table
    assert "(0.0 % of pixels ignored)" in md
    assert "| bird | 70.0 | 65.0 | 80.0 | 75.0 |" in md  # the rule beside the best fixed threshold
    assert "| bird | 90.0 | 70.0 | 80.0 | 60.0 |" in md  # recognisability, masks, and the any-background stress
    assert "(best fixed threshold 0.35)" in md


def test_best_fixed_threshold_is_the_grid_value_with_the_best_class_mean():
    from freemask.assess.generator import best_fixed_threshold

    # two classes; maps rise left to right; the truth starts at column 6 for "bird" and column 2 for "car"
    ramp = np.tile(np.linspace(0, 1, 10), (10, 1))  # column j has value j / 9
    maps = np.stack([ramp, ramp])
    truth = np.zeros((2, 10, 10), bool)
    truth[0, :, 6:] = True
    truth[1, :, 2:] = True
    grid = np.array([0.1, 0.3, 0.5, 0.7])
    res = best_fixed_threshold(maps, truth, ["bird", "car"], grid)
    # t=0.1: cols 1-9 -> bird 4/9, car 8/9: mean 2/3; t=0.3: cols 3-9 -> bird 4/7, car 7/8: mean 0.7232
    # t=0.5: cols 5-9 -> bird 4/5, car 5/8: 0.7125; t=0.7: cols 7-9 -> bird 3/4, car 3/8: 0.5625
    assert res["threshold"] == 0.3
    assert res["mean"] == pytest.approx((4 / 7 + 7 / 8) / 2, abs=1e-4)
    assert res["per_class"] == {"bird": round(4 / 7, 4), "car": round(7 / 8, 4)}
    assert list(res["curve"]) == ["0.10", "0.30", "0.50", "0.70"]
    with pytest.raises(ValueError, match="empty threshold grid"):
        best_fixed_threshold(maps, truth, ["bird", "car"], np.array([]))
