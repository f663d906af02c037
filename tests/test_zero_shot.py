"""Zero-shot VOC 15 + 5: seen / unseen / harmonic mIoU, counted by hand under both conventions."""
import math

import numpy as np
import pytest

from freemask.data.voc import CLASS_NAMES
from freemask.metrics.segmentation import confusion_matrix
from freemask.metrics.zero_shot import VOC_UNSEEN, harmonic_mean, zero_shot_summary

X = 255
# VOC ids: 0 background, 8 cat, 15 person (seen); 17 sheep, 20 tv monitor (unseen)
GT = np.array([[0, 0, 15, 15],
               [8, 8, 17, 17],
               [0, 20, 20, X]], np.uint8)
PRED = np.array([[15, 0, 15, 0],
                 [8, 17, 17, 17],
                 [20, 20, 0, 8]], np.uint8)


def _conf():
    return confusion_matrix(PRED, GT, 21)


def test_the_split_is_15_seen_and_5_unseen():
    s = zero_shot_summary(_conf(), CLASS_NAMES)
    assert s["unseen"] == ["pottedplant", "sheep", "sofa", "train", "tvmonitor"] == list(VOC_UNSEEN)
    assert len(s["seen"]) == 15 and "background" not in s["seen"] and "person" in s["seen"]
    assert len(zero_shot_summary(_conf(), CLASS_NAMES, background="seen")["seen"]) == 16


def test_background_ignored_hand_computed():
    s = zero_shot_summary(_conf(), CLASS_NAMES, background="ignore")
    # background gt pixels (0,0) (0,1) (2,0) are not scored, nor is (2,3) (ignore): 8 scored pixels
    #   person gt (0,2)(0,3); pred 15 at (0,2) [(0,0) is background gt]: TP 1, FN 1       -> 1/2
    #   cat    gt (1,0)(1,1); pred 8 at (1,0):                          TP 1, FN 1       -> 1/2
    #   sheep  gt (1,2)(1,3); pred 17 at (1,1)(1,2)(1,3):               TP 2, FP 1       -> 2/3
    #   tv     gt (2,1)(2,2); pred 20 at (2,1) [(2,0) is background gt]: TP 1, FN 1      -> 1/2
    # seen = (1/2 + 1/2) / 2 = 1/2 (the 13 absent seen classes are left out)
    # unseen = (2/3 + 1/2) / 2 = 7/12 (pottedplant, sofa, train absent)
    # harmonic = 2 * 1/2 * 7/12 / (1/2 + 7/12) = (7/12) / (13/12) = 7/13
    assert s["per_class"]["person"] == pytest.approx(1 / 2) and s["per_class"]["sheep"] == pytest.approx(2 / 3)
    assert s["per_class"]["tvmonitor"] == pytest.approx(1 / 2) and s["per_class"]["sofa"] is None
    assert "background" not in s["per_class"]
    assert s["seen_mIoU"] == pytest.approx(1 / 2)
    assert s["unseen_mIoU"] == pytest.approx(7 / 12)
    assert s["harmonic"] == pytest.approx(7 / 13)


def test_background_as_a_seen_class_hand_computed():
    s = zero_shot_summary(_conf(), CLASS_NAMES, background="seen")
    # all 11 non-ignored pixels scored
    #   background gt (0,0)(0,1)(2,0); pred 0 at (0,1)(0,3)(2,2): TP 1, FP 2, FN 2 -> 1/5
    #   person     gt (0,2)(0,3); pred 15 at (0,0)(0,2):          TP 1, FP 1, FN 1 -> 1/3
    #   cat        -> 1/2 as before ((2,3) is ignore)
    #   sheep      -> 2/3 as before
    #   tv         gt (2,1)(2,2); pred 20 at (2,0)(2,1):          TP 1, FP 1, FN 1 -> 1/3
    # seen = (1/5 + 1/3 + 1/2) / 3 = 31/90 ; unseen = (2/3 + 1/3) / 2 = 1/2
    # harmonic = 2 * 31/90 * 1/2 / (31/90 + 45/90) = 31/76
    assert s["per_class"]["background"] == pytest.approx(1 / 5)
    assert s["seen_mIoU"] == pytest.approx(31 / 90)
    assert s["unseen_mIoU"] == pytest.approx(1 / 2)
    assert s["harmonic"] == pytest.approx(31 / 76)


def test_harmonic_mean_reproduces_table_4_rows_of_other_methods():
    # Table 4 prints seen, unseen and harmonic each rounded to 0.1
    assert harmonic_mean(78.0, 21.2) == pytest.approx(33.3, abs=0.05)  # ZS3
    assert harmonic_mean(78.6, 30.3) == pytest.approx(43.7, abs=0.05)  # CaGNet
    assert harmonic_mean(83.5, 41.3) == pytest.approx(55.3, abs=0.05)  # SIGN
    assert harmonic_mean(86.4, 63.6) == pytest.approx(73.3, abs=0.05)  # ZegFormer
    assert harmonic_mean(71.4, 65.0) == pytest.approx(68.1, abs=0.1)  # DiffuMask (Swin-B): 68.05
    assert harmonic_mean(0.0, 0.0) == 0.0 and math.isnan(harmonic_mean(float("nan"), 0.5))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="background must be one of ignore, seen, got 'drop'"):
        zero_shot_summary(_conf(), CLASS_NAMES, background="drop")
    with pytest.raises(KeyError, match="unseen class 'tv monitor'"):
        zero_shot_summary(_conf(), CLASS_NAMES, unseen=("sheep", "tv monitor"))
    with pytest.raises(ValueError, match="does not match 20 class names"):
        zero_shot_summary(_conf(), CLASS_NAMES[:20])
