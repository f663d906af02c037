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
