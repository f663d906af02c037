"""The Independence-Prior GAN (freemask.masks.independence*): its formulas by hand, its networks'
properties, determinism, save/load, the box crop geometry, and that it learns a mask where the
answer is known."""
import numpy as np
import pytest
import torch

from freemask.masks.independence import (area_penalty, composite, distill, load_models, predict_masks, save_models,
                                         smooth_l1, train_independence)
from freemask.masks.independence_boxes import (background_patches, crop_boxes, crop_images, crop_masks, learn_masks,
                                               paste_back)
from freemask.masks.independence_cluster import best_shift_iou, cluster_demo, translate
from freemask.masks.independence_nets import Discriminator, NetShape
from freemask.params import Independence, ParamsError, validate


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 1.0


def _discs(n, side=16, seed=0):
    """Crops of a coloured disc (radius 4-5, near the centre) on a textured background, the true
    discs, and background-only images of the same texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] + 0.5

    def texture(k):
        base = rng.uniform(40, 120, (k, 1, 1, 3))
        return np.clip(base + rng.normal(0, 25, (k, side, side, 1)), 0, 255)

    crops, truths = texture(n), []
    for i in range(n):
        cy, cx = side / 2 + rng.uniform(-1.5, 1.5, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(4, 5) ** 2
        colour = rng.permutation([rng.uniform(200, 255), rng.uniform(0, 60), rng.uniform(100, 255)])
        crops[i][disc] = colour
        truths.append(disc)
    return crops.astype(np.uint8), np.stack(truths), texture(n).astype(np.uint8)


def test_composite_is_alpha_blending_in_stacking_order():
    a = torch.tensor([[[[1.0, 1.0]]]])  # layer 1: white, full mask
    b = torch.tensor([[[[0.0, 0.5]]]])  # layer 2: mask 0.5 on the left, 1 on the right
    out = composite([a.expand(1, 3, 1, 2), b.expand(1, 3, 1, 2)],
                    [torch.ones(1, 1, 1, 2), torch.tensor([[[[0.5, 1.0]]]])])
    assert torch.allclose(out[0, :, 0], torch.tensor([[0.5, 0.5]] * 3))  # 0*0.5 + 1*0.5; 0.5*1 + 1*0
    # order matters: the later layer covers the earlier one
    x = composite([torch.full((1, 3, 1, 1), 0.2), torch.full((1, 3, 1, 1), 0.8)],
                  [torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.25)])
    assert torch.allclose(x, torch.full((1, 3, 1, 1), 0.8 * 0.25 + (0.2 * 0.5) * 0.75))  # x0 black
    y = composite([torch.full((1, 3, 1, 1), 0.8), torch.full((1, 3, 1, 1), 0.2)],
                  [torch.full((1, 1, 1, 1), 0.25), torch.full((1, 1, 1, 1), 0.5)])
    assert not torch.allclose(x, y)


def test_area_penalty_and_smooth_l1_by_formula():
    m = torch.zeros(2, 4, 4)
    m[0, :2] = 1.0  # area share 0.5
    m[1, 0, 0] = 0.8  # 0.05
    want = ((0.5 - 0.25) ** 2 + (0.05 - 0.25) ** 2) / 2
    assert area_penalty(m, 0.25).item() == pytest.approx(want)
    assert smooth_l1(torch.tensor([0.1, 0.5, 0.0]), torch.tensor([0.0, 0.0, 0.25])).item() == \
        pytest.approx((4 * 0.01 + 0.5 + 0.25) / 3)


def test_discriminator_is_spectrally_normalised():
    torch.manual_seed(0)
    d = Discriminator(NetShape(side=16, width=8)).train()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    with torch.no_grad():
        for _ in range(50):  # power iterations run in each training forward pass
            d(torch.randn(2, 3, 16, 16))
    for c in convs:
        sigma = torch.linalg.matrix_norm(c.weight.detach().reshape(c.weight.shape[0], -1), 2).item()
        raw = torch.linalg.matrix_norm(c.parametrizations.weight.original.reshape(c.weight.shape[0], -1), 2).item()
        assert sigma == pytest.approx(1.0, abs=0.02) and abs(raw - 1.0) > 0.05


def _cfg(**kw):
    base = dict(crop_side=16, width=8, d_width=8, steps=6, batch_size=8, distill_steps=3, threads=1)
    return Independence(**{**base, **kw})


def test_training_is_deterministic_and_round_trips(tmp_path):
    crops, _, backs = _discs(12)
    cfg = _cfg()
    a, b = train_independence(crops, backs, cfg, progress=False), train_independence(crops, backs, cfg, progress=False)
    for (k, va), vb in zip(a.provider.state_dict().items(), b.provider.state_dict().values()):
        assert torch.equal(va, vb), k
    assert a.history == b.history
    other = train_independence(crops, backs, cfg.model_copy(update={"seed": 1}), progress=False)
    assert not np.array_equal(predict_masks(a, crops), predict_masks(other, crops))
    student, losses = distill(a, crops, backs, cfg, progress=False)
    assert len(losses) == 3
    save_models(a, tmp_path / "ip", student)
    loaded, loaded_student = load_models(tmp_path / "ip")
    assert np.array_equal(predict_masks(loaded, crops), predict_masks(a, crops))
    assert np.array_equal(predict_masks(loaded_student, crops), predict_masks(student, crops))
    assert loaded.history == a.history
    with pytest.raises(ValueError, match="crop_side"):
        predict_masks(a, crops[:, :8, :8])


def test_crop_then_paste_back_restores_a_known_mask():
    masks = np.zeros((3, 32, 32), bool)
    masks[0, 10:16, 12:20] = True  # inside
    masks[1, 0:5, 27:32] = True  # at a corner: the window leaves the image
    boxes = crop_boxes(masks, 0.25)
    assert boxes[0].tolist() == [7, 10, 12] and boxes[2].tolist() == [0, 0, 32]  # 8 * 1.5; empty: whole image
    for side in (12, 16):  # same size as the window, and resized
        back = paste_back(crop_masks(masks, boxes, side), boxes, (32, 32)) > 0.5
        for m, bm in zip(masks, back):
            assert _iou(m, bm) >= (1.0 if side == 12 else 0.85)
    exact = paste_back(crop_masks(masks[:1], boxes[:1], 12), boxes[:1], (32, 32)) > 0.5
    assert np.array_equal(exact[0], masks[0])
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 7:19, 10:22] = 200
    assert (crop_images(img, boxes[:1], 12) == 200).all()


def test_background_patches_miss_the_object():
    img = np.zeros((2, 32, 32, 3), np.uint8)
    img[:, 8:24, 8:24] = 255  # the object: any patch touching it has white pixels
    masks = (img[..., 0] > 0)
    p = background_patches(img, masks, np.array([6, 7]), 8, 5, np.random.default_rng(0))
    assert len(p) == 10 and p.max() == 0
    full = np.ones((1, 8, 8), bool)
    with pytest.raises(ValueError, match="no background patch"):
        background_patches(img[:1, :8, :8], full, np.array([4]), 8, 2, np.random.default_rng(0))


def _learns_discs(**kw):
    crops, truth, backs = _discs(64)
    cfg = _cfg(batch_size=16, width=8, d_width=16, distill_steps=0, **kw)
    untrained = predict_masks(train_independence(crops, backs, cfg.model_copy(update={"steps": 1}), progress=False),
                              crops) > 0.5
    masks = predict_masks(train_independence(crops, backs, cfg, progress=False), crops) > 0.5
    learned = np.mean([_iou(m, t) for m, t in zip(masks, truth)])
    ones = np.mean([_iou(np.ones_like(t), t) for t in truth])
    initial = np.mean([_iou(m, t) for m, t in zip(untrained, truth)])
    assert learned > max(ones, initial) + 0.15, (learned, ones, initial)


def test_short_training_learns_disc_masks_better_than_trivial_ones():
    """Discs on texture, 16x16 crops: the teacher's masks after ~7 s beat the all-ones crop mask and
    the untrained provider's masks (IoU with the true discs; measured 0.63 against 0.25). The
    learning rates are 2.5x the paper's to learn in 400 steps."""
    _learns_discs(steps=400, lr_g=1e-3, lr_d=5e-4)


@pytest.mark.slow
def test_training_with_the_papers_learning_rates_learns_disc_masks():
    _learns_discs(steps=1000)  # measured 0.59 against 0.25


def test_learn_masks_per_class_end_to_end():
    crops, truth, backs = _discs(8, side=16)
    images = np.zeros((8, 32, 32, 3), np.uint8)
    images[:] = 90
    images[:, 8:24, 8:24] = crops
    att = np.zeros((8, 32, 32), bool)
    att[:, 8:24, 8:24] = truth
    out = learn_masks(images, att, None, _cfg(crop_side=8, steps=2, distill_steps=2, patches_per_image=2),
                      ["a"] * 4 + ["b"] * 4, progress=False)
    assert out.shape == (8, 32, 32) and out.dtype == bool
    with pytest.raises(ValueError, match="one class per image"):
        learn_masks(images, att, None, _cfg(), ["a"], progress=False)


def test_translate_and_best_shift_iou():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0
    moved = translate(x, 2, np.random.default_rng(0))
    assert moved.sum() <= 1 and moved.shape == x.shape
    disc = np.hypot(*np.mgrid[-8:8, -8:8] + 0.5) < 4
    shifted = np.roll(disc, (3, -2), (0, 1))
    assert best_shift_iou(shifted[None], disc)[0] == pytest.approx(1.0)
    assert best_shift_iou(np.ones((1, 16, 16), bool), disc)[0] == pytest.approx(disc.mean())


def test_cluster_demo_runs_and_writes_a_figure(tmp_path):
    cfg = _cfg(cluster_side=16, cluster_resolution=48, cluster_objects=10, cluster_layers=2, cluster_steps=2,
               cluster_patches=16, batch_size=4)
    m = cluster_demo(cfg, str(tmp_path / "c.png"), progress=False)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert 0 <= m["mask_iou_vs_true_instance"] <= 1 and 0 < m["true_area_share"] < 1


def test_params_name_the_bad_key():
    with pytest.raises(ParamsError, match="independence.crop_side"):
        validate({"independence": {"crop_side": 12}})
    with pytest.raises(ParamsError, match="independence.cluster_class"):
        validate({"independence": {"cluster_class": "dog"}})
    with pytest.raises(ParamsError, match="independence.lr_g"):
        validate({"independence": {"lr_g": 0}})
