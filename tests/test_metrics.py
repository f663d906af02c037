import math

import numpy as np
import pytest

from freemask.metrics.segmentation import IoU, confusion_matrix, iou_per_class, mask_iou, pixel_accuracy, summarize


def test_confusion_matrix_rows_gt_cols_pred():
    gt = np.array([[0, 0, 1], [1, 2, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 1], [1, 2, 0]], dtype=np.uint8)
    conf = confusion_matrix(pred, gt, 3)
    expected = np.array([
        [1, 1, 0],  # gt 0: one right, one predicted as 1
        [0, 2, 0],  # gt 1: both right
        [1, 0, 1],  # gt 2: one right, one predicted as 0
    ])
    assert conf.dtype == np.int64 and conf.shape == (3, 3)
    np.testing.assert_array_equal(conf, expected)


def test_ignore_pixels_are_skipped_whatever_the_prediction():
    gt = np.array([0, 255, 1, 255], dtype=np.uint8)
    pred = np.array([0, 1, 0, 255], dtype=np.uint8)  # 255 in pred is fine where gt is ignored
    conf = confusion_matrix(pred, gt, 2)
    np.testing.assert_array_equal(conf, [[1, 0], [1, 0]])
    assert conf.sum() == 2


def test_bad_labels_raise_naming_the_value():
    gt = np.array([0, 1, 7], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"gt contains label 7"):
        confusion_matrix(np.zeros(3, np.uint8), gt, 3)
    with pytest.raises(ValueError, match=r"pred contains label 5"):
        confusion_matrix(np.array([0, 5, 1], np.uint8), np.zeros(3, np.uint8), 3)
    # an ignore label predicted on a counted pixel is not a class either
    with pytest.raises(ValueError, match=r"pred contains label 255"):
        confusion_matrix(np.array([0, 255], np.uint8), np.array([0, 1], np.uint8), 3)
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(np.zeros(3, np.uint8), np.zeros(4, np.uint8), 3)


def test_iou_and_summary_hand_computed():
    # class 0: tp 1, fp 1 (gt2->0), fn 1 (gt0->1) -> 1/3
    # class 1: tp 2, fp 1, fn 0 -> 2/3
    # class 2: tp 1, fp 0, fn 1 -> 1/2
    # class 3: absent from gt and pred -> NaN / None, excluded from the mean
    conf = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    ious = iou_per_class(conf)
    np.testing.assert_allclose(ious[:3], [1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(ious[3])
    s = summarize(conf, ["background", "a", "b", "c"])
    assert s["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["per_class"] == pytest.approx({"background": 1 / 3, "a": 2 / 3, "b": 0.5, "c": None})
    assert s["per_class"]["c"] is None
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    assert IoU.summarize(conf, ["background", "a", "b", "c"]) == s
    assert pixel_accuracy(conf) == pytest.approx(4 / 6)


def test_class_only_predicted_counts_as_zero_iou():
    gt = np.array([0, 0, 0, 0], np.uint8)
    pred = np.array([0, 0, 0, 2], np.uint8)
    s = summarize(confusion_matrix(pred, gt, 3), ["bg", "x", "y"])
    # bg: 3 / 4 ; x absent -> None ; y: predicted but absent in gt -> 0
    assert s["per_class"] == pytest.approx({"bg": 0.75, "x": None, "y": 0.0})
    assert s["mIoU"] == pytest.approx(0.375)


def test_summarize_checks_names():
    with pytest.raises(ValueError, match="class names"):
        summarize(np.eye(3, dtype=np.int64), ["a", "b"])


def test_all_ignored_gives_nan_summary():
    conf = confusion_matrix(np.zeros(4, np.uint8), np.full(4, 255, np.uint8), 2)
    assert conf.sum() == 0
    s = summarize(conf, ["bg", "x"])
    assert math.isnan(s["mIoU"]) and math.isnan(s["pixel_accuracy"])
    assert s["per_class"] == {"bg": None, "x": None}


def test_mask_iou():
    a = np.array([[1, 1, 0], [0, 0, 0]], bool)
    b = np.array([[0, 1, 1], [0, 0, 0]], bool)
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, np.zeros_like(a)) == 0.0
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((3, 3), bool))


def test_mask_iou_leaves_ignored_pixels_out():
    a = np.array([[1, 1, 0], [0, 0, 0]], bool)
    b = np.array([[0, 1, 1], [0, 0, 0]], bool)
    assert mask_iou(a, b, ignore=np.array([[1, 0, 0], [0, 0, 0]], bool)) == pytest.approx(1 / 2)
    assert mask_iou(a, b, ignore=np.array([[1, 0, 1], [0, 0, 0]], bool)) == 1.0
    assert mask_iou(a, b, ignore=np.ones_like(a)) == 1.0  # nothing left to disagree on
    with pytest.raises(ValueError, match="ignore mask shape"):
        mask_iou(a, b, ignore=np.zeros((3, 3), bool))


def test_per_class_mean_weighs_classes_equally():
    from freemask.metrics.segmentation import per_class_mean

    out = per_class_mean(np.array([1.0, 1.0, 1.0, 0.0]), ["a", "a", "a", "b"], ("b", "a", "c"))
    assert out == {"mean": 0.5, "per_class": {"b": 0.0, "a": 1.0}} and list(out["per_class"]) == ["b", "a"]
    with pytest.raises(ValueError, match=r"classes \['z'\] are not in the class order"):
        per_class_mean(np.array([1.0]), ["z"], ("a",))
