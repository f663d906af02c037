"""Named Mask2Former profiles (train.backbone) and local backbone weights (train.backbone_weights)."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from freemask.params import ParamsError, Train, dump_defaults, validate
from freemask.segmenters.mask2former import backbone_of, build_model, n_parameters, train_segmenter
from test_mask2former import NUM_LABELS, TINY, squares


def test_micro_is_the_default_and_keeps_its_size():
    assert Train().backbone == "micro" and Train().backbone_weights is None
    assert n_parameters(build_model(9, Train())) == 1_305_481  # the toy config: background + 8 classes


def test_real_profile_owns_the_architecture_keys():
    data = dump_defaults()
    data["train"].update(backbone="r50", hidden_dim=64, num_queries=20)
    with pytest.raises(ParamsError, match=r"hidden_dim, num_queries: set by backbone='r50'"):
        validate(data)
    data["train"].update(backbone="resnet", hidden_dim=32, num_queries=12)
    with pytest.raises(ParamsError, match=r"train\.backbone: Input should be 'micro', 'r50' or 'swin_b'"):
        validate(data)


def _perturbed_backbone_state(cfg: Train) -> dict[str, torch.Tensor]:
    state = backbone_of(build_model(NUM_LABELS, cfg)).state_dict()
    g = torch.Generator().manual_seed(5)
    return {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in state.items()}


@pytest.mark.parametrize("suffix", ["safetensors", "pt"])
def test_backbone_weights_are_loaded_from_a_local_file(tmp_path, suffix):
    cfg = Train(**TINY)
    state = _perturbed_backbone_state(cfg)
    path = tmp_path / f"backbone.{suffix}"
    save_file(state, str(path)) if suffix == "safetensors" else torch.save(state, path)
    model = build_model(NUM_LABELS, Train(**TINY, backbone_weights=str(path)))
    loaded = backbone_of(model).state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    # the rest of the model keeps its seeded init
    plain = build_model(NUM_LABELS, cfg).state_dict()
    head = {k: v for k, v in model.state_dict().items() if ".pixel_level_module.encoder." not in k}
    assert head and all(torch.equal(v, plain[k]) for k, v in head.items())


def test_backbone_weights_that_do_not_fit_name_the_file_and_keys(tmp_path):
    cfg = Train(**TINY)
    state = _perturbed_backbone_state(cfg)
    dropped = sorted(state)[0]
    del state[dropped]
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=rf"train\.backbone_weights: .*wrong\.safetensors: does not fit the backbone: "
                                         rf"1 missing \(e\.g\. \['{dropped}'\]\); 1 unexpected \(e\.g\. \['extra\.weight'\]\)"):
        build_model(NUM_LABELS, Train(**TINY, backbone_weights=str(path)))
    with pytest.raises(FileNotFoundError, match=r"train\.backbone_weights: .*nowhere\.safetensors does not exist"):
        build_model(NUM_LABELS, Train(**TINY, backbone_weights=str(tmp_path / "nowhere.safetensors")))


@pytest.mark.slow
@pytest.mark.parametrize("profile, millions", [("r50", (40, 50)), ("swin_b", (100, 115))])
def test_paper_profile_builds_and_trains_one_step_on_the_cpu(tmp_path, profile, millions):
    t0 = time.time()
    cfg = Train(backbone=profile, steps=1, batch_size=1, input_size=128, eval_every=1, threads=1, val_fraction=0.5)
    model = build_model(NUM_LABELS, cfg)
    lo, hi = millions
    assert lo * 1e6 < n_parameters(model) < hi * 1e6  # Mask2Former paper: R50 44M, Swin-B 107M
    assert model.config.num_queries == 100 and model.config.hidden_dim == 256
    assert len(model.model.transformer_module.decoder.layers) == 9
    images, labels = squares(2)
    stats = train_segmenter(cfg, images, labels, NUM_LABELS, tmp_path / profile, progress=False)
    assert np.isfinite(stats["final_loss"]) and stats["input_size"] == 128
    assert (tmp_path / profile / "model.safetensors").is_file()
    print(f"{profile}: {n_parameters(model) / 1e6:.1f} M parameters, built and trained one step in {time.time() - t0:.0f} s")
