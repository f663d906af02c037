import numpy as np

from freemask.compose.paste import cut_out, paste


def _object(label_value=3):
    img = np.zeros((10, 10, 3), np.uint8)
    lab = np.zeros((10, 10), np.uint8)
    img[2:6, 3:7] = 200
    lab[2:6, 3:7] = label_value
    return cut_out("k", img, lab)


def test_cut_out_crops_to_the_mask_and_skips_empty_masks():
    c = _object()
    assert c.rgb.shape == (4, 4, 3) and c.mask.all() and c.label == 3
    assert cut_out("e", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)) is None


def test_newer_paste_overwrites_the_labels_it_covers():
    image, label = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8)
    paste(image, label, _object(3), 0.4, 0.5, 0.4)
    paste(image, label, _object(5), 0.6, 0.5, 0.4)
    assert (label == 5).sum() == 64 and (label == 3).sum() == 64 - 4 * 8  # 8x8 boxes overlapping by 4 columns
    assert (image[label > 0] == 200).all() and (image[label == 0] == 0).all()


def test_paste_clips_at_the_border():
    image, label = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8)
    paste(image, label, _object(2), 0.0, 0.0, 0.4)
    assert (label == 2).sum() == 16 and label[:4, :4].all()


def test_undecided_pixels_are_pasted_as_ignore_never_as_object():
    img = np.zeros((10, 10, 3), np.uint8)
    lab = np.zeros((10, 10), np.uint8)
    img[2:6, 3:7] = 200
    lab[2:6, 3:7] = 4
    img[6, 3:7] = 100  # an undecided rim below the object
    lab[6, 3:7] = 255
    c = cut_out("k", img, lab)
    assert c.rgb.shape == (5, 4, 3) and c.mask.sum() == 16 and c.ignore.sum() == 4 and c.label == 4
    image, label = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8)
    paste(image, label, c, 0.5, 0.5, 0.5)  # 5x4 -> 10x8
    assert (label == 4).sum() == 64 and (label == 255).sum() == 16
    assert (image[label != 0] > 0).all() and (image[label == 0] == 0).all()  # the rim's pixels come along
    assert (label[5:13, 6:14] == 4).all() and (label[13:15, 6:14] == 255).all()
    # a later object 3 rows higher: its undecided rim (rows 7-8) covers rows of the first object
    paste(image, label, c, 0.5, 0.2, 0.5)
    assert (label[0:7, 6:14] == 4).all() and (label[7:9, 6:14] == 255).all() and (label[9:13, 6:14] == 4).all()


def test_a_sample_with_only_undecided_pixels_gives_no_cutout():
    lab = np.zeros((4, 4), np.uint8)
    lab[1:3, 1:3] = 255
    assert cut_out("u", np.zeros((4, 4, 3), np.uint8), lab) is None
