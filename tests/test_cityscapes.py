"""Cityscapes reader (labelIds -> trainIds) and the paper's Table 3 Human / Vehicle scores,
on files written in the dataset's on-disk layout, with IoUs counted by hand."""
import numpy as np
import pytest
from PIL import Image

from freemask.data import cityscapes
from freemask.metrics.grouping import HUMAN_VEHICLE, Grouping, collapse_confusion, grouped_summary, to_groups
from freemask.metrics.segmentation import confusion_matrix, summarize

X = 255
# Ground truth as label ids, the way gtFine stores it:
#   7 road, 8 sidewalk, 0 unlabeled, 24 person, 25 rider, 26 car, 33 bicycle, 4 static
GT_IDS = np.array([[7, 7, 8, 8],
                   [7, 7, 8, 0],
                   [24, 24, 26, 26],
                   [25, 33, 26, 4]], np.uint8)
# ... and as train ids: road 0, sidewalk 1, person 11, rider 12, car 13, bicycle 18; void -> 255
GT_TRAIN = np.array([[0, 0, 1, 1],
                     [0, 0, 1, X],
                     [11, 11, 13, 13],
                     [12, 18, 13, X]], np.uint8)
# A 19-class prediction (train ids; 14 = truck). The two pixels under ignore are not scored.
PRED = np.array([[0, 0, 11, 1],
                 [0, 1, 1, 13],
                 [0, 12, 13, 13],
                 [12, 13, 14, 0]], np.uint8)


def _write(root, split, city, frame, label_ids):
    """One frame as Cityscapes stores it: an RGB leftImg8bit PNG and a grey labelIds PNG."""
    h, w = label_ids.shape
    stem = f"{city}_000000_{frame:06d}"
    for sub, name, arr in (("leftImg8bit", f"{stem}_leftImg8bit.png", np.full((h, w, 3), 90, np.uint8)),
                           ("gtFine", f"{stem}_gtFine_labelIds.png", label_ids)):
        d = root / sub / split / city
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(d / name)
    return stem


def test_label_ids_become_the_19_train_ids(tmp_path):
    stem = _write(tmp_path, "val", "frankfurt", 294, GT_IDS)
    ds = cityscapes.dataset(tmp_path, "val")
    assert len(ds) == 1 and len(ds.class_names) == 19
    sid, image, label = ds[0]
    assert sid == stem and image.shape == (4, 4, 3)
    np.testing.assert_array_equal(label, GT_TRAIN)


def test_train_id_table_matches_the_official_one():
    names = cityscapes.CLASS_NAMES
    assert names[0] == "road" and names[11] == "person" and names[13] == "car" and names[18] == "bicycle"
    lut = cityscapes.ID_TO_TRAIN_ID
    assert lut[7] == 0 and lut[26] == 13 and lut[33] == 18
    ignored = [i for i in range(34) if lut[i] == 255]
    assert ignored == [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30]
    assert (lut[34:] == -1).all()


def test_19_class_miou_hand_computed(tmp_path):
    _write(tmp_path, "val", "lindau", 19, GT_IDS)
    [(_, _, gt)] = list(cityscapes.dataset(tmp_path, "val"))
    s = summarize(confusion_matrix(PRED, gt, 19), list(cityscapes.CLASS_NAMES))
    # 14 scored pixels. Per class: TP / (TP + FP + FN)
    #   road     gt (0,0)(0,1)(1,0)(1,1), pred 0 at (0,0)(0,1)(1,0)(2,0): TP 3, FP 1, FN 1 -> 3/5
    #   sidewalk gt (0,2)(0,3)(1,2), pred 1 at (0,3)(1,1)(1,2):           TP 2, FP 1, FN 1 -> 2/4
    #   person   gt (2,0)(2,1), pred 11 at (0,2):                          TP 0, FP 1, FN 2 -> 0
    #   rider    gt (3,0), pred 12 at (2,1)(3,0):                          TP 1, FP 1       -> 1/2
    #   car      gt (2,2)(2,3)(3,2), pred 13 at (2,2)(2,3)(3,1):           TP 2, FP 1, FN 1 -> 2/4
    #   truck    no gt, pred at (3,2):                                     FP 1             -> 0
    #   bicycle  gt (3,1) predicted car:                                   FN 1             -> 0
    #   the 12 other classes appear nowhere: left out of the mean
    # mIoU = (3/5 + 1/2 + 0 + 1/2 + 1/2 + 0 + 0) / 7 = (21/10) / 7 = 0.3
    pc = s["per_class"]
    assert pc["road"] == pytest.approx(3 / 5) and pc["sidewalk"] == pytest.approx(1 / 2)
    assert pc["person"] == 0 and pc["rider"] == pytest.approx(1 / 2) and pc["car"] == pytest.approx(1 / 2)
    assert pc["truck"] == 0 and pc["bicycle"] == 0 and pc["sky"] is None
    assert s["mIoU"] == pytest.approx(0.3)


def test_human_vehicle_grouped_iou_hand_computed():
    gt = to_groups(GT_TRAIN, cityscapes.CLASS_NAMES, HUMAN_VEHICLE)
    pred = to_groups(PRED, cityscapes.CLASS_NAMES, HUMAN_VEHICLE)
    # groups: 0 background (every other class, bicycle included), 1 human, 2 vehicle
    np.testing.assert_array_equal(gt, [[0, 0, 0, 0], [0, 0, 0, X], [1, 1, 2, 2], [1, 0, 2, X]])
    np.testing.assert_array_equal(pred, [[0, 0, 1, 0], [0, 0, 0, 2], [0, 1, 2, 2], [1, 2, 2, 0]])
    s = grouped_summary(confusion_matrix(pred, gt, 3), HUMAN_VEHICLE)
    # human   gt (2,0)(2,1)(3,0); pred at (0,2)(2,1)(3,0): TP 2, FP 1 (a sidewalk pixel), FN 1 -> 2/4
    #         (person predicted as rider at (2,1) is no longer an error once both are human)
    # vehicle gt (2,2)(2,3)(3,2); pred at (2,2)(2,3)(3,1)(3,2): TP 3 (truck for car counts),
    #         FP 1 (the bicycle pixel: background, not vehicle, in the paper's grouping) -> 3/4
    # mIoU = (1/2 + 3/4) / 2 = 0.625; background (not averaged): TP 6, FP 1, FN 2 -> 6/9
    # Had the other classes been ignored instead, human would be 2/3 and vehicle 3/3.
    assert s["per_group"] == pytest.approx({"human": 0.5, "vehicle": 0.75})
    assert s["mIoU"] == pytest.approx(0.625)
    assert s["background"] == pytest.approx(6 / 9)


def test_grouping_a_19_class_confusion_matrix_gives_the_same_scores():
    conf19 = confusion_matrix(PRED, GT_TRAIN, 19)
    conf3 = collapse_confusion(conf19, cityscapes.CLASS_NAMES, HUMAN_VEHICLE)
    direct = confusion_matrix(to_groups(PRED, cityscapes.CLASS_NAMES, HUMAN_VEHICLE),
                              to_groups(GT_TRAIN, cityscapes.CLASS_NAMES, HUMAN_VEHICLE), 3)
    np.testing.assert_array_equal(conf3, direct)
    assert grouped_summary(conf3, HUMAN_VEHICLE)["mIoU"] == pytest.approx(0.625)


def test_groupings_are_checked():
    with pytest.raises(KeyError, match="'lorry'"):
        Grouping({"vehicle": ("car", "lorry")}).lut(cityscapes.CLASS_NAMES)
    with pytest.raises(ValueError, match="'car' is in both group 'a' and group 'b'"):
        Grouping({"a": ("car",), "b": ("car",)})
    with pytest.raises(ValueError, match="label 19 is neither a class id 0..18 nor 255"):
        to_groups(np.array([0, 19], np.uint8), cityscapes.CLASS_NAMES, HUMAN_VEHICLE)
    with pytest.raises(ValueError, match="does not match the groups"):
        grouped_summary(np.eye(2, dtype=np.int64), HUMAN_VEHICLE)


def test_unknown_split_is_named(tmp_path):
    _write(tmp_path, "train", "aachen", 1, GT_IDS)
    with pytest.raises(ValueError, match="Cityscapes split 'training' is unknown; expected one of: train, val"):
        cityscapes.pairs(tmp_path, "training")
    with pytest.raises(FileNotFoundError, match=r"image directory .*leftImg8bit/val not found"):
        cityscapes.pairs(tmp_path, "val")


def test_missing_label_file_is_named_with_its_image(tmp_path):
    _write(tmp_path, "val", "munster", 1, GT_IDS)
    stem = _write(tmp_path, "val", "munster", 2, GT_IDS)
    (tmp_path / "gtFine" / "val" / "munster" / f"{stem}_gtFine_labelIds.png").unlink()
    with pytest.raises(FileNotFoundError,
                       match=rf"label file .*munster/{stem}_gtFine_labelIds\.png is missing \(for .*{stem}_leftImg8bit\.png\)"):
        cityscapes.pairs(tmp_path, "val")


def test_label_id_outside_the_table_is_named(tmp_path):
    bad = GT_IDS.copy()
    bad[0, 0], bad[3, 3] = 34, 200
    stem = _write(tmp_path, "val", "frankfurt", 7, bad)
    ds = cityscapes.dataset(tmp_path, "val")
    with pytest.raises(ValueError, match=rf"{stem}_gtFine_labelIds\.png: Cityscapes label id 34 is not in the "
                                         r"label table \(all unknown ids: \[34, 200\]\)"):
        ds[0]
