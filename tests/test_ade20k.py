"""ADE20K (ADEChallengeData2016) reader: reduce-zero-label on files in the benchmark's layout."""
import numpy as np
import pytest
from PIL import Image

from freemask.data import ade20k
from freemask.metrics.segmentation import confusion_matrix, summarize

X = 255
# Raw annotation values: 0 = other/unlabelled, 1 wall, 3 sky, 13 person, 150 flag
RAW = np.array([[0, 1, 1, 3],
                [0, 1, 3, 3],
                [13, 13, 150, 150],
                [13, 0, 150, 1]], np.uint8)
# After reduce-zero-label: 0 -> ignore, v -> v - 1 (wall 0, sky 2, person 12, flag 149)
REDUCED = np.array([[X, 0, 0, 2],
                    [X, 0, 2, 2],
                    [12, 12, 149, 149],
                    [12, X, 149, 0]], np.uint8)


def _write(root, split, name, raw):
    for sub, ext, arr in (("images", "jpg", np.full((*raw.shape, 3), 120, np.uint8)), ("annotations", "png", raw)):
        d = root / sub / split
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(d / f"{name}.{ext}")


def test_class_names_are_the_150_benchmark_classes_in_order():
    names = ade20k.CLASS_NAMES
    assert len(names) == 150 == len(set(names))
    assert names[:3] == ("wall", "building", "sky") and names[12] == "person" and names[-1] == "flag"


def test_reduce_zero_label_and_miou_hand_computed(tmp_path):
    _write(tmp_path, "validation", "ADE_val_00000001", RAW)
    ds = ade20k.dataset(tmp_path, "validation")
    sid, image, label = ds[0]
    assert sid == "ADE_val_00000001" and image.shape == (4, 4, 3)
    np.testing.assert_array_equal(label, REDUCED)

    pred = np.array([[2, 0, 2, 2],
                     [0, 0, 2, 0],
                     [12, 0, 149, 149],
                     [12, 149, 149, 0]], np.uint8)
    s = summarize(confusion_matrix(pred, label, 150), list(ade20k.CLASS_NAMES))
    # (0,0) (1,0) (3,1) were 0 in the annotation: not scored whatever is predicted there. 13 scored.
    #   wall   gt (0,1)(0,2)(1,1)(3,3); pred 0 at (0,1)(1,1)(1,3)(2,1)(3,3): TP 3, FP 2, FN 1 -> 3/6
    #   sky    gt (0,3)(1,2)(1,3); pred 2 at (0,2)(0,3)(1,2):                TP 2, FP 1, FN 1 -> 2/4
    #   person gt (2,0)(2,1)(3,0); pred 12 at (2,0)(3,0):                    TP 2, FN 1       -> 2/3
    #   flag   gt (2,2)(2,3)(3,2); pred 149 at the same three:               TP 3             -> 1
    # mIoU = (1/2 + 1/2 + 2/3 + 1) / 4 = 2/3
    assert s["per_class"]["wall"] == pytest.approx(1 / 2) and s["per_class"]["sky"] == pytest.approx(1 / 2)
    assert s["per_class"]["person"] == pytest.approx(2 / 3) and s["per_class"]["flag"] == 1.0
    assert s["mIoU"] == pytest.approx(2 / 3)


def test_value_above_150_is_named_with_its_file(tmp_path):
    raw = RAW.copy()
    raw[0, 0] = 151
    _write(tmp_path, "training", "ADE_train_00000009", raw)
    with pytest.raises(ValueError, match=r"ADE_train_00000009\.png: ADE20K annotation value 151 is not in the label table"):
        ade20k.dataset(tmp_path, "training")[0]


def test_unknown_split_and_missing_annotation_are_named(tmp_path):
    _write(tmp_path, "validation", "ADE_val_00000001", RAW)
    _write(tmp_path, "validation", "ADE_val_00000002", RAW)
    with pytest.raises(ValueError, match="ADE20K split 'val' is unknown; expected one of: training, validation"):
        ade20k.pairs(tmp_path, "val")
    (tmp_path / "annotations" / "validation" / "ADE_val_00000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"label file .*ADE_val_00000002\.png is missing \(for .*ADE_val_00000002\.jpg\)"):
        ade20k.pairs(tmp_path, "validation")
