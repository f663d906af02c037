import json

import numpy as np
import pytest
import torch

from freemask.params import Train
from freemask.segmenters.mask2former import (
    _save_atomically,
    build_model,
    load_segmenter,
    n_parameters,
    predict,
    semantic_to_targets,
    train_segmenter,
)

torch.set_num_threads(1)

NUM_LABELS = 4
COLOURS = {1: (220, 30, 30), 2: (30, 200, 40), 3: (40, 60, 230)}


def squares(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Coloured squares (class = colour) on a noisy grey background."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        img = rng.normal(110, 12, (size, size, 3))
        for _ in range(rng.integers(1, 3)):
            c = int(rng.integers(1, NUM_LABELS))
            s = int(rng.integers(8, 14))
            y, x = rng.integers(0, size - s, 2)
            img[y : y + s, x : x + s] = COLOURS[c]
            labels[i, y : y + s, x : x + s] = c
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels


TINY = dict(threads=1, steps=30, batch_size=8, lr=2e-3, warmup_steps=5, input_size=32, patch_size=2, eval_every=10,
            val_fraction=0.1, train_num_points=256)


def test_default_model_size_and_forward_shapes():
    model = build_model(9, Train())
    assert 1_000_000 <= n_parameters(model) <= 2_000_000
    out = model(pixel_values=torch.zeros(2, 3, 64, 64))
    assert out.class_queries_logits.shape == (2, Train().num_queries, 9 + 1)
    # masks at the stem stride: 64 px input / 2 px patches
    assert out.masks_queries_logits.shape == (2, Train().num_queries, 32, 32)


def test_build_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model(3, Train(seed=1, **TINY)).state_dict()
    b = build_model(3, Train(seed=1, **TINY)).state_dict()
    c = build_model(3, Train(seed=2, **TINY)).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_semantic_to_targets_one_mask_per_present_class_ignore_negative():
    lab = torch.tensor([[[0, 0, 2], [255, 2, 2]], [[255, 255, 255], [255, 255, 255]]])
    masks, classes = semantic_to_targets(lab)
    assert classes[0].tolist() == [0, 2]
    assert masks[0].tolist() == [[[1, 1, 0], [0, 0, 0]], [[0, 0, 1], [0, 1, 1]]]
    assert masks[0].dtype == torch.float32 and classes[0].dtype == torch.int64
    assert masks[1].shape == (0, 2, 3) and classes[1].numel() == 0


def test_train_is_deterministic_and_predicts(tmp_path):
    images, labels = squares(40)
    labels[0, :4, :4] = 255  # some ignore pixels
    cfg = Train(**TINY)
    stats = train_segmenter(cfg, images, labels, NUM_LABELS, tmp_path / "a", progress=False)
    train_segmenter(cfg, images, labels, NUM_LABELS, tmp_path / "b", progress=False)
    assert stats["steps"] == 30 and np.isfinite(stats["final_loss"])
    assert [h["step"] for h in stats["heldout_history"]] == [10, 20, 30]
    assert stats["best_step"] in (10, 20, 30)
    assert stats["heldout_images"] == 4 and stats["train_images"] == 36
    assert stats["n_params"] > 0
    assert json.loads((tmp_path / "a" / "training.json").read_text())["best_step"] == stats["best_step"]
    assert (tmp_path / "a" / "model.safetensors").is_file()
    assert not (tmp_path / "a.tmp").exists()
    # byte-identical folders, or DVC sees a changed output on every run
    files = sorted(f.name for f in (tmp_path / "a").iterdir())
    assert files == sorted(f.name for f in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)

    a, b = load_segmenter(tmp_path / "a"), load_segmenter(tmp_path / "b")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    init = build_model(NUM_LABELS, cfg).state_dict()
    assert any(not torch.equal(sa[k], init[k]) for k in sa)  # it did train

    test_images, _ = squares(5, seed=1)
    pred = predict(a, test_images, batch_size=2)
    assert pred.shape == (5, 32, 32) and pred.dtype == np.uint8
    assert pred.max() < NUM_LABELS
    # other input resolutions come back at their own resolution
    assert predict(a, test_images[:, :24, :20]).shape == (5, 24, 20)


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    images, labels = squares(12)
    cfg = Train(**{**TINY, "steps": 4, "eval_every": 2, "val_fraction": 0.25})
    model = build_model(NUM_LABELS, cfg)
    with torch.no_grad():  # perturb so that the weights are not just the seeded init
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    _save_atomically(model, {"note": "test"}, tmp_path / "m")
    loaded = load_segmenter(tmp_path / "m")
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        o1, o2 = model(pixel_values=x), loaded(pixel_values=x)
    assert torch.equal(o1.masks_queries_logits, o2.masks_queries_logits)
    assert torch.equal(o1.class_queries_logits, o2.class_queries_logits)
    np.testing.assert_array_equal(predict(loaded, images), predict(model, images))
    assert loaded.config.num_labels == NUM_LABELS
    assert loaded.config.backbone_config.image_size == 32

    # training into an existing directory replaces it
    train_segmenter(cfg, images, labels, NUM_LABELS, tmp_path / "m", progress=False)
    assert json.loads((tmp_path / "m" / "training.json").read_text())["steps"] == 4
    assert not (tmp_path / "m.old").exists() and not (tmp_path / "m.tmp").exists()


def test_too_small_input_rejected():
    with pytest.raises(ValueError, match="input_size"):
        build_model(3, Train(input_size=32, patch_size=4))


def test_load_missing_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_segmenter(tmp_path / "nowhere")


def test_bad_labels_rejected(tmp_path):
    images, labels = squares(4)
    labels[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"\[7\]"):
        train_segmenter(Train(**TINY), images, labels, NUM_LABELS, tmp_path / "x", progress=False)


def test_photometric_augmentation_is_seeded_bounded_and_off_at_zero():
    from freemask.segmenters.mask2former import photometric

    x = torch.rand(4, 3, 8, 8)
    a = photometric(x, torch.Generator().manual_seed(1), 0.2, 0.04)
    b = photometric(x, torch.Generator().manual_seed(1), 0.2, 0.04)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(photometric(x, torch.Generator().manual_seed(1), 0.0, 0.0), x)


def test_scale_jitter_moves_image_and_labels_together_and_marks_uncovered_pixels_ignore():
    from freemask.segmenters.mask2former import IGNORE_INDEX, scale_jitter

    # a label map whose value encodes the pixel's position, and an image that carries the same value
    y = torch.arange(16 * 16).reshape(1, 16, 16).repeat(6, 1, 1) % 200
    x = y[:, None].float().repeat(1, 3, 1, 1)
    xs, ys = scale_jitter(x, y, torch.Generator().manual_seed(0), (0.5, 2.0))
    assert xs.shape == x.shape and ys.shape == y.shape
    ign = ys == IGNORE_INDEX
    # zoom-out leaves uncovered borders (ignore), zoom-in none; the seeded draw has both kinds
    per_image = ign.flatten(1).any(1)
    assert per_image.any() and not per_image.all()
    # every covered label is a label of the original image, and where the image was sampled
    # at a pixel centre exactly it agrees with the label
    assert set(ys[~ign].unique().tolist()) <= set(y.unique().tolist())
    again = scale_jitter(x, y, torch.Generator().manual_seed(0), (0.5, 2.0))
    assert torch.equal(again[0], xs) and torch.equal(again[1], ys)
    # off at [1, 1] or with probability 0: untouched; with probability 0.5 some images are untouched
    x1, y1 = scale_jitter(x, y, torch.Generator().manual_seed(0), (1.0, 1.0))
    assert torch.equal(x1, x) and torch.equal(y1, y)
    x0, y0 = scale_jitter(x, y, torch.Generator().manual_seed(0), (0.5, 2.0), prob=0.0)
    assert torch.allclose(x0, x, atol=1e-4) and torch.equal(y0, y)
    _, yh = scale_jitter(x, y, torch.Generator().manual_seed(0), (0.5, 2.0), prob=0.5)
    same = (yh == y).flatten(1).all(1)
    assert same.any() and not same.all()


def test_scale_jitter_zoom_in_magnifies():
    from freemask.segmenters.mask2former import scale_jitter

    y = torch.zeros(16, 32, 32, dtype=torch.long)
    y[:, 12:20, 12:20] = 1  # an 8x8 square in the centre
    _, ys = scale_jitter(y[:, None].float(), y, torch.Generator().manual_seed(0), (2.0, 2.0))
    area = (ys == 1).flatten(1).sum(1)
    # twice the side: four times the area when the shifted view holds it all, less when cut off
    assert area.max() == 4 * 64 and (area <= 4 * 64).all() and (area > 64).sum() >= 8
