import numpy as np
import pytest
import torch

from freemask.masks.refine import (affinity_foreground, affinity_masks, random_walk, select_threshold, threshold_grid,
                                   transition_matrix)
from freemask.masks.threshold import otsu_threshold


def _two_regions(r=8):
    """Affinities of an r x r grid where the top-left quarter and the rest are two separate regions."""
    obj = np.zeros((r, r), bool)
    obj[: r // 2, : r // 2] = True
    same = (obj.ravel()[:, None] == obj.ravel()[None, :]).astype(np.float64)
    return obj, torch.from_numpy(same / same.sum(1, keepdims=True))[None]


def test_transition_matrix_is_row_stochastic_and_rejects_negative_affinities():
    a = torch.rand(2, 5, 5)
    t = transition_matrix(a, beta=3.0)
    assert torch.allclose(t.sum(-1), torch.ones(2, 5, dtype=t.dtype))
    with pytest.raises(ValueError, match="non-negative"):
        transition_matrix(a - 1, 1.0)
    with pytest.raises(ValueError, match="batch, N, N"):
        transition_matrix(torch.rand(5, 5), 1.0)


def test_random_walk_spreads_a_map_over_its_region_only():
    obj, aff = _two_regions()
    m = np.zeros((1, 8, 8))
    m[0, 0, 0] = 1.0  # one hot pixel inside the object
    out = random_walk(m, transition_matrix(aff, 1.0), steps=1)
    assert np.allclose(out[0][obj], 1.0 / obj.sum()) and np.allclose(out[0][~obj], 0.0)  # mass spread, not made


def test_foreground_claims_uncertain_pixels_of_its_region_and_bg_power_sets_how_many():
    obj, aff = _two_regions()
    maps = np.where(obj, 0.35, 0.05)[None]  # a faint object: 0.35 < 0.5, yet its region is separate
    maps[0, 0, 0] = 1.0
    t = transition_matrix(aff, 1.0)
    weak = affinity_foreground(maps, t, steps=1, bg_power=1.0)  # fg where walked map > walked (1 - map)
    strong = affinity_foreground(maps, t, steps=1, bg_power=4.0)
    assert not weak[0].any()
    assert np.array_equal(strong[0], obj)
    with pytest.raises(ValueError, match="normalised"):
        affinity_foreground(maps * 2, t, 1, 4.0)


def test_refinement_keeps_the_faint_part_of_an_object_that_otsu_cuts_off():
    rng = np.random.default_rng(0)
    obj, aff = _two_regions()
    raw = np.where(obj, 0.3, 0.0) + rng.uniform(0, 0.1, obj.shape)
    raw[:2, :4] = 1.0  # a strong core over half the object: Otsu splits the core from the faint half
    raw[6, 6] = 0.25  # a background speckle below the object's faint part
    raw = (raw - raw.min()) / (raw.max() - raw.min())
    otsu = raw > otsu_threshold(raw)
    grid = np.arange(0.05, 0.96, 0.05)
    target, taus, masks = affinity_masks(raw[None], transition_matrix(aff, 1.0), steps=2, bg_power=4.0, grid=grid)
    assert np.array_equal(target[0], obj)

    def iou(m):
        return (m & obj).sum() / (m | obj).sum()

    assert iou(masks[0]) == 1.0 > iou(otsu)


def test_threshold_selection_takes_the_best_matching_grid_value():
    raw = np.linspace(0, 1, 100).reshape(10, 10)
    target = raw > 0.62
    assert select_threshold(raw, target, np.array([0.2, 0.4, 0.6, 0.8])) == 0.6


def test_threshold_grid_steps_up_to_below_one_and_rejects_a_step_outside_0_1():
    np.testing.assert_allclose(threshold_grid(0.25), [0.25, 0.5, 0.75])
    assert len(threshold_grid(0.05)) == 19 and threshold_grid(0.05).max() < 1
    for bad in (0, 1, -0.1):
        with pytest.raises(ValueError, match="grid step"):
            threshold_grid(bad)


def test_transition_matrix_leaves_the_affinities_alone_and_matches_the_formula():
    a = torch.rand(2, 9, 9, dtype=torch.float64)
    before = a.clone()
    t = transition_matrix(a, 2.0)
    assert torch.equal(a, before)  # computed in place on its own copy, never on the caller's tensor
    want = a ** 2 / (a ** 2).sum(-1, keepdim=True)
    assert torch.equal(t, want) and torch.allclose(t.sum(-1), torch.ones(2, 9, dtype=torch.float64))
