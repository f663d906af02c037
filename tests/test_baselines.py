import numpy as np
import pytest
import torch

from freemask.masks.baselines import dataset_diffusion_masks, diffumask_masks, self_attention_power
from freemask.masks.refine import transition_matrix
from freemask.masks.result import ObjectMasks
from freemask.masks.threshold import normalize01


def _blob(r=8, lo=2, hi=6, value=1.0):
    m = np.zeros((r, r))
    m[lo:hi, lo:hi] = value
    return m


def _regions(labels: np.ndarray) -> torch.Tensor:
    """Transition matrix of a (1, N, N) self-attention where every pixel attends to its own region."""
    flat = labels.ravel()
    return transition_matrix(torch.from_numpy((flat[:, None] == flat[None, :]).astype(np.float64))[None], 1.0)


def test_diffumask_uses_each_classes_own_threshold_and_resolutions():
    coarse = np.stack([_blob(lo=1, hi=7), _blob(lo=1, hi=7)])  # the 16x16 layers see a larger blob
    fine = np.stack([_blob(), _blob()])
    maps = {32: fine, 16: coarse}
    out = diffumask_masks(maps, ["car", "boat"], thresholds={"car": 0.5, "boat": 0.25},
                          resolutions={"car": [32], "boat": [32, 16]})
    assert np.array_equal(out.foreground[0], fine[0] > 0.5)  # car: fine map only
    # boat: mean of both normalised maps is 1 on the small blob, 0.5 on the ring around it
    assert np.allclose(out.maps[1][fine[1] > 0], 1.0) and np.allclose(out.maps[1][(coarse[1] > 0) & (fine[1] == 0)], 0.5)
    assert np.array_equal(out.foreground[1], coarse[1] > 0)  # 0.5 > 0.25 keeps the ring
    tighter = diffumask_masks(maps, ["car", "boat"], {"car": 0.5, "boat": 0.75}, {"car": [32], "boat": [32, 16]})
    assert np.array_equal(tighter.foreground[1], fine[1] > 0)  # the class's threshold, not a shared one
    assert not out.ignore.any()


def test_diffumask_with_one_resolution_and_threshold_equals_the_fixed_rule():
    rng = np.random.default_rng(0)
    raw = rng.random((3, 8, 8))
    out = diffumask_masks({32: raw}, ["car"] * 3, {"car": 0.4}, {"car": [32]})
    assert np.array_equal(out.foreground, normalize01(raw) > 0.4)


def test_diffumask_names_what_is_missing():
    maps = {32: np.zeros((1, 8, 8))}
    with pytest.raises(KeyError, match="class 'cat' has no DiffuMask threshold"):
        diffumask_masks(maps, ["cat"], {"car": 0.5}, {"car": [32]})
    with pytest.raises(KeyError, match=r"asks for resolutions \[8\]; maps given at \[32\]"):
        diffumask_masks(maps, ["car"], {"car": 0.5}, {"car": [32, 8]})
    with pytest.raises(ValueError, match="2 classes for 1 maps"):
        diffumask_masks(maps, ["car", "car"], {"car": 0.5}, {"car": [32]})


def test_self_attention_power_is_the_matrix_power_applied_to_the_map():
    rng = np.random.default_rng(1)
    a = rng.random((16, 16)) ** 4
    a /= a.sum(1, keepdims=True)
    m = rng.random((4, 4))
    want = np.linalg.matrix_power(a, 3) @ m.ravel()
    t = transition_matrix(torch.from_numpy(a)[None], 1.0)
    got = self_attention_power(m[None], t, tau=3)[0]
    assert np.allclose(got, normalize01(want.reshape(4, 4)), atol=1e-6)
    # an affine change of the map does not change the normalised result
    assert np.allclose(self_attention_power(3 * m[None] + 1, t, 3), got[None], atol=1e-6)


def test_dataset_diffusion_fills_the_object_region_and_ignores_the_uncertain_band():
    r = 8
    regions = np.zeros((r, r), int)
    regions[2:6, 2:6] = 1  # the object
    regions[0, :] = 2  # a strip the cross-attention half-touches
    cross = np.where(regions == 1, 0.2, 0.0)
    cross[3, 3] = 1.0  # a hot spot inside the object
    cross[0, :4] = 0.6  # half of the strip lights up
    # one step spreads each region's mean over it: object (0.2 * 15 + 1) / 16 = 0.25, strip 0.3,
    # rest 0; normalised: object 0.833, strip 1
    out = dataset_diffusion_masks(cross[None], _regions(regions), tau=1, low=0.7, high=0.9)
    assert np.array_equal(out.foreground[0], regions == 2)
    assert np.array_equal(out.ignore[0], regions == 1)
    assert not (out.foreground & out.ignore).any()
    out = dataset_diffusion_masks(cross[None], _regions(regions), tau=1, low=0.5, high=0.8)
    assert np.array_equal(out.foreground[0], regions >= 1) and not out.ignore.any()
    with pytest.raises(ValueError, match="low < high"):
        dataset_diffusion_masks(cross[None], _regions(regions), 1, 0.6, 0.5)


def test_object_masks_label_maps_carry_the_class_and_the_ignore_index():
    fg = np.zeros((2, 4, 4), bool)
    fg[:, 1:3, 1:3] = True
    ign = np.zeros_like(fg)
    ign[0, 0, :] = True
    labels = ObjectMasks(np.zeros(fg.shape, np.float32), fg, ign).labels([5, 2])
    assert labels.dtype == np.uint8
    assert set(np.unique(labels[0])) == {0, 5, 255} and set(np.unique(labels[1])) == {0, 2}
    assert (labels[0][0] == 255).all() and (labels[0][1:3, 1:3] == 5).all()
    with pytest.raises(ValueError, match="both foreground and ignored"):
        ObjectMasks(np.zeros(fg.shape, np.float32), fg, fg)
    with pytest.raises(ValueError, match="class ids must be in 1..254"):
        ObjectMasks.binary(np.zeros(fg.shape, np.float32), fg).labels([0, 1])
