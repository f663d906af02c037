"""The learned affinity network (AffinityNet) on hand-made images whose object is known."""
import numpy as np
import pytest
import torch

from freemask.masks.affinity_net import (AffinityNet, NetShape, TrainSettings, affinity_loss, dense_affinity,
                                         load_affinity_net, neighbour_offsets, pair_affinities, pair_labels,
                                         save_affinity_net, train_affinity_net)
from freemask.masks.refine import affinity_masks, threshold_grid, transition_matrix


def _squares(n=12, size=16, seed=0):
    """Images of a bright square (random place and colour) on a dark noisy background; the maps are
    a blurred guess of the square, as an attention map would be: confident inside, unsure on its rim
    and just outside it. Returns images, maps, the true squares."""
    rng = np.random.default_rng(seed)
    images, maps, truths = [], [], []
    for _ in range(n):
        img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        s = int(rng.integers(max(2, size // 4), size // 2 + 1))
        y, x = rng.integers(1, size - s, 2).tolist()
        img[y:y + s, x:x + s] = rng.integers(150, 255, 3)
        truth = np.zeros((size, size), bool)
        truth[y:y + s, x:x + s] = True
        m = np.where(truth, 0.4, 0.0).astype(np.float32)  # unsure on the object's rim ...
        m[y + 1:y + s - 1, x + 1:x + s - 1] = 1.0  # ... confident inside it
        ring = np.zeros((size, size), bool)
        ring[max(0, y - 1):y + s + 1, max(0, x - 1):x + s + 1] = True
        m[ring & ~truth] = 0.3  # and unsure just outside it, as a blurred attention map is
        images.append(img), maps.append(m), truths.append(truth)
    return np.stack(images), np.stack(maps), np.stack(truths)


def test_offsets_cover_every_pair_within_the_radius_once():
    offs = neighbour_offsets(3)
    assert len(offs) == len(set(offs))
    both = set(offs) | {(-dy, -dx) for dy, dx in offs}
    want = {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if 0 < dy * dy + dx * dx < 9}
    assert both == want and not set(offs) & {(-dy, -dx) for dy, dx in offs}
    with pytest.raises(ValueError, match="radius must be >= 2"):
        neighbour_offsets(1)


def test_pair_labels_by_hand():
    # one row: fg fg unsure bg; offsets (0, 1) only for radius 2 along a row
    maps = torch.tensor([[[0.9, 0.8, 0.3, 0.0]]])
    labels = dict(zip(neighbour_offsets(2), pair_labels(maps, neighbour_offsets(2), fg=0.6, bg=0.1)))
    fg, bg, neg = labels[(0, 1)]
    assert fg.tolist() == [[[True, False, False]]]  # (0,1) both object
    assert bg.tolist() == [[[False, False, False]]]
    assert neg.tolist() == [[[False, False, False]]]  # (1,2) has an unsure pixel, (2,3) too
    maps = torch.tensor([[[0.9, 0.0, 0.0]]])
    fg, bg, neg = dict(zip(neighbour_offsets(2), pair_labels(maps, neighbour_offsets(2), 0.6, 0.1)))[(0, 1)]
    assert neg.tolist() == [[[True, False]]] and bg.tolist() == [[[False, True]]]
    with pytest.raises(ValueError, match="bg < fg"):
        pair_labels(maps, neighbour_offsets(2), fg=0.1, bg=0.5)


def test_loss_weighs_the_three_groups_as_affinitynet():
    a = [torch.tensor([[[0.5, 0.25, 0.5]]])]
    lab = [(torch.tensor([[[True, False, False]]]), torch.tensor([[[False, True, False]]]),
            torch.tensor([[[False, False, True]]]))]
    want = -np.log(0.5 + 1e-5) - np.log(0.25 + 1e-5) - 2 * np.log(0.5 + 1e-5)
    assert float(affinity_loss(a, lab)) == pytest.approx(want, rel=1e-5)


def test_dense_affinity_is_symmetric_local_and_one_on_the_diagonal():
    torch.manual_seed(0)
    net = AffinityNet(NetShape(features=4, width=8, radius=3))
    images, _, _ = _squares(n=2, size=8)
    a = dense_affinity(net, images, 8)
    assert a.shape == (2, 64, 64)
    assert torch.equal(a, a.transpose(1, 2)) and torch.all(a.diagonal(dim1=1, dim2=2) == 1)
    yx = torch.stack(torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij"), -1).reshape(64, 2).float()
    far = torch.cdist(yx, yx) >= 3
    assert torch.all(a[:, far] == 0) and torch.all(a[:, ~far] > 0)
    feats = net(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    (aff,) = pair_affinities(feats, [(0, 1)])
    assert torch.allclose(a[0, 0, 1], aff[0, 0, 0])  # pixel (0,0) with (0,1)


def test_training_is_deterministic_and_learns_the_object_boundary(tmp_path):
    images, maps, truths = _squares(n=24, size=16)
    settings = TrainSettings(steps=150, batch_size=8, lr=3e-3, fg=0.6, bg=0.1, seed=3)
    shape = NetShape(features=8, width=16, radius=4)  # confident object and background are 3 px apart
    net, losses = train_affinity_net(images, maps, shape, settings, progress=False)
    again, _ = train_affinity_net(images, maps, shape, settings, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    a = dense_affinity(net, images, 16)
    t = torch.from_numpy(truths.reshape(len(truths), -1))
    near = a > 0
    inside = near & (t[:, :, None] == t[:, None, :])
    across = near & (t[:, :, None] != t[:, None, :])
    assert a[inside].mean() > 0.6 and a[across].mean() < 0.3  # the square's edge cuts the affinities
    # walking the guessed maps on the learned affinities recovers the squares at least as well as the maps
    T = transition_matrix(a, 1.0)
    _, _, masks = affinity_masks(maps, T, 2, 6.0, threshold_grid(0.05))

    def iou(m):
        return np.mean([(x & y).sum() / (x | y).sum() for x, y in zip(m, truths)])

    assert iou(masks) >= iou(maps > 0.5) - 1e-9
    save_affinity_net(net, tmp_path / "net")
    loaded = load_affinity_net(tmp_path / "net")
    assert loaded.shape == shape and torch.equal(dense_affinity(loaded, images, 16), a)  # same batch: same bits
    # an image's affinities do not depend on its batch mates, but a batch of 2 may take another conv kernel than
    # one of 24 (MKL's AVX2 path, as on AMD, does): float32 rounding, 2.4e-7 apart there and within 2.1e-6 of a
    # float64 run; a wrong image or wrong weights are off by 0.1 to 1
    torch.testing.assert_close(dense_affinity(loaded, images[:2], 16), a[:2], rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_named(tmp_path):
    images, maps, _ = _squares(n=4, size=8)
    with pytest.raises(ValueError, match="one map of the image's size"):
        train_affinity_net(images, maps[:3], progress=False)
    with pytest.raises(ValueError, match="uint8"):
        dense_affinity(AffinityNet(), images.astype(np.float32), 8)
    with pytest.raises(FileNotFoundError, match="no affinity net"):
        load_affinity_net(tmp_path)
