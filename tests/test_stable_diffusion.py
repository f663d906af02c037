"""The Stable Diffusion generator on an SD-1.5-shaped pipeline with tiny random weights, built from
configs, saved to disk and loaded back as a user's checkpoint is: nothing comes from the hub."""
import os
import shutil
import socket
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from freemask.generators.attention import cross_attention_layers, layer_resolutions
from freemask.generators.stable_diffusion import (SDProfile, generate_with_masks, load_pipeline, load_profile,
                                                  make_prompt)
from freemask.generators.attention import AttentionStore
from freemask.masks.refine import affinity_masks, threshold_grid, transition_matrix
from freemask.masks.threshold import threshold
from freemask.params import ParamsError, Refine

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "sd15.yaml"


@pytest.fixture
def sd_folder(tmp_path, clip_tokenizer_dir) -> Path:
    """SD 1.5's layout (4 UNet levels, cross-attention in the first three, 2 layers per block, an
    8x VAE) with tiny channels: 16x16 latents, 128 px images."""
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(clip_tokenizer_dir, model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(8, 16, 16, 16),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                        sample_size=128)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "sd")
    return tmp_path / "sd"


def _profile(folder, **kw) -> SDProfile:
    base = dict(model=str(folder), steps=2, guidance=7.5, height=128, width=128, resolutions=[8, 16],
                refine={"resolution": 8},  # 16x16 latents: self-attention at 16, 8, 4 and 2
                varieties={"plant": ["potted plant"], "bird": ["blue jay", "sparrow"]})
    return SDProfile(**{**base, **kw})


def test_sd15_shaped_checkpoint_gives_an_image_and_one_map_per_word(sd_folder):
    pipe = load_pipeline(sd_folder)
    assert pipe.safety_checker is None and pipe.unet.dtype == torch.float32 and pipe.device.type == "cpu"
    res = layer_resolutions(pipe.unet)
    cross = cross_attention_layers(pipe.unet)
    # down: 3 attention blocks x 2 layers; mid: 1; up: 3 attention blocks x 3 layers (layers_per_block + 1)
    assert len(cross) == 16
    assert Counter(res[n] for n in cross) == {16: 5, 8: 5, 4: 5, 2: 1}
    cfg = _profile(sd_folder, resolutions=[2, 4, 8, 16])
    plant, phrase = make_prompt(cfg, "plant", "on", "floor", seed=0)
    assert (plant, phrase) == ("a photo of a potted plant on the floor", "potted plant")  # pot|ted plant: 3 tokens
    prompts, words, seeds = [plant, "a photo of a dog on the grass"], [[phrase, "floor"], ["dog", "grass"]], [3, 4]
    out = generate_with_masks(pipe, prompts, words, seeds, cfg)
    assert out.images.dtype == np.uint8 and out.images.shape == (2, 128, 128, 3)
    assert out.maps.dtype == np.float32 and out.maps.shape == (2, 2, 128, 128)  # (samples, words, H, W)
    assert np.isfinite(out.maps).all()
    assert np.allclose(out.maps.min(axis=(2, 3)), 0) and np.allclose(out.maps.max(axis=(2, 3)), 1)
    assert not np.allclose(out.maps[0, 0], out.maps[0, 1], atol=1e-3)  # two words, two different maps
    assert out.layers == {n: res[n] for n in cross}  # every attn2 layer recorded, at the resolution predicted
    # one mask per word: its map above the grid threshold that the refinement chose for it
    assert out.masks.dtype == bool and out.masks.shape == out.maps.shape
    grid = threshold_grid(cfg.refine.grid_step)
    for m, mask in zip(out.maps.reshape(-1, 128, 128), out.masks.reshape(-1, 128, 128)):
        # cut in float32 as the refinement cuts: a pixel at float32(t) is above the float64 t, and the maps'
        # last bits (so whether such a pixel turns up) differ from CPU to CPU
        assert any(np.array_equal(mask, m > np.float32(t)) for t in grid)
    again = generate_with_masks(pipe, prompts, words, seeds, cfg)
    assert np.array_equal(out.images, again.images) and np.array_equal(out.maps, again.maps)
    assert np.array_equal(out.masks, again.masks)
    alone = generate_with_masks(pipe, prompts[1:], words[1:], seeds[1:], cfg)
    assert np.abs(alone.images[0].astype(int) - out.images[1]).max() <= 1  # batch mates do not change a sample
    assert np.allclose(alone.maps[0], out.maps[1], atol=1e-4)


def test_masks_follow_the_mask_rule_and_the_recorded_resolutions(sd_folder):
    """The affinity rule's masks are the paper's refinement applied to the maps with the recorded
    self-attention; otsu thresholds each map; only the asked cross-attention resolutions record."""
    pipe = load_pipeline(sd_folder)
    args = (["a photo of a dog on the grass", "a photo of a bird in the sky"], [["dog"], ["bird"]], [1, 2])
    cfg = _profile(sd_folder)
    out = generate_with_masks(pipe, *args, cfg)
    assert set(out.layers.values()) == {8, 16}  # the profile's resolutions, no other layer recorded
    otsu = generate_with_masks(pipe, *args, _profile(sd_folder, mask_rule="otsu"))
    # the rule changes the masks only (up to rounding: without recording, self-attention runs fused)
    assert np.allclose(otsu.maps, out.maps, atol=1e-4)
    assert np.array_equal(otsu.masks[:, 0], np.stack([threshold(m, "otsu") for m in otsu.maps[:, 0]]))


def test_refined_masks_walk_each_words_map_on_its_images_affinity(monkeypatch):
    """Two images, two words: each word's mask is ``affinity_masks`` of its map with its own image's
    transition matrix, whether the matrices are made for both images at once or one at a time."""
    import freemask.generators.stable_diffusion as sd
    rng = np.random.default_rng(0)
    side, size = 4, 8
    store = AttentionStore(torch.zeros((2, 2), dtype=torch.long), self_attention_resolution=side)
    left = np.repeat(np.arange(side * side) % side < side // 2, 1)  # pixels of the left half attend to each other
    block = torch.tensor((left[:, None] == left[None, :]).astype(np.float32)) + 0.01
    store.add_self("attn1", torch.stack([block, block.T.flip(0).flip(1)]), heads=1, height=side)
    maps = rng.random((2, 2, size, size)).astype(np.float32)
    refine = Refine(resolution=side, walk_steps=2)
    grid = threshold_grid(refine.grid_step)
    want = np.stack([np.stack([affinity_masks(maps[i:i + 1, w], transition_matrix(store.affinity(slice(i, i + 1)), 2.0),
                                              2, refine.bg_power, grid)[2][0] for w in range(2)]) for i in range(2)])
    # both images' walk is one (2, N, N) product here, one image's a (1, N, N) one: the walked scores may differ
    # in the last bits, but every pixel's foreground and background scores are 0.3 or more apart, so the masks
    # cannot: exact on any CPU
    assert np.array_equal(sd.refined_masks(store, maps, refine), want)
    monkeypatch.setattr(sd, "TRANSITION_CHUNK_BYTES", 1)  # an image at a time: the very computation of `want`
    assert np.array_equal(sd.refined_masks(store, maps, refine), want)


@pytest.mark.parametrize("scheduler", ["DPMSolverMultistep", "Euler"])
def test_every_scheduler_name_samples(sd_folder, scheduler):
    pipe = load_pipeline(sd_folder)
    out = generate_with_masks(pipe, ["a photo of a dog on the grass"], [["dog"]], [0],
                              _profile(sd_folder, scheduler=scheduler, max_timestep=600))
    assert np.isfinite(out.maps).all() and out.maps.shape == (1, 1, 128, 128)


def test_impossible_requests_are_named_before_sampling(sd_folder):
    pipe = load_pipeline(sd_folder)
    args = (["a photo of a dog on the grass"], [["dog"]], [0])
    with pytest.raises(ValueError, match=r"resolutions \[32\]: at 128 px this UNet has cross-attention at "
                                         r"\[2, 4, 8, 16\]"):
        generate_with_masks(pipe, *args, _profile(sd_folder, resolutions=[16, 32]))
    with pytest.raises(ValueError, match="max_timestep=0 is below every one of the 2 sampling timesteps"):
        generate_with_masks(pipe, *args, _profile(sd_folder, max_timestep=0))
    with pytest.raises(ValueError, match="height 96 is not a multiple of 64"):
        generate_with_masks(pipe, *args, _profile(sd_folder, height=96, width=96))
    with pytest.raises(ValueError, match=r"refine.resolution=32: at 128 px this UNet has self-attention at "
                                         r"\[2, 4, 8, 16\]"):
        generate_with_masks(pipe, *args, _profile(sd_folder, refine={"resolution": 32}))
    with pytest.raises(KeyError, match="'cat' does not occur"):
        generate_with_masks(pipe, ["a photo of a dog on the grass"], [["cat"]], [0], _profile(sd_folder))


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Every attempt to resolve or connect to a host, recorded and refused."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return attempts


def test_a_missing_model_is_named_and_nothing_touches_the_network(sd_folder, tmp_path, no_network):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: no such model directory$"):
        load_pipeline(missing)
    with pytest.raises(FileNotFoundError, match=r"^freemask-tests/not-downloaded: no such directory and no such model "
                                                r"in the Hugging Face cache \(.*cache\); freemask never downloads"):
        load_pipeline("freemask-tests/not-downloaded", cache_dir=tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: not a diffusers pipeline folder"):
        load_pipeline(tmp_path / "empty")
    shutil.rmtree(sd_folder / "unet")
    with pytest.raises(FileNotFoundError, match=f"^{sd_folder}: incomplete pipeline folder {sd_folder}: no unet/$"):
        load_pipeline(sd_folder)
    assert no_network == []


def test_a_model_in_the_hf_cache_loads_by_repo_id_offline(sd_folder, tmp_path, no_network):
    """The cache layout ``hf download`` leaves: models--org--name/{refs/main, snapshots/<commit>/}."""
    repo = tmp_path / "cache" / "models--freemask-tests--tiny-sd"
    commit = "0" * 40
    shutil.copytree(sd_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    pipe = load_pipeline("freemask-tests/tiny-sd", cache_dir=tmp_path / "cache")
    assert Counter(layer_resolutions(pipe.unet).values())[16] > 0
    assert "HF_HUB_OFFLINE" not in os.environ  # set for the call only
    assert no_network == []


def test_sub_class_variety_is_chosen_by_seed(sd_folder):
    cfg = _profile(sd_folder)
    picks = [make_prompt(cfg, "bird", "in", "sky", seed=s) for s in range(20)]
    assert {p for _, p in picks} == {"blue jay", "sparrow"}
    assert picks == [make_prompt(cfg, "bird", "in", "sky", seed=s) for s in range(20)]
    assert make_prompt(cfg, "dog", "on", "grass", seed=5) == ("a photo of a dog on the grass", "dog")


def test_profile_yaml_is_validated_and_errors_name_the_key(tmp_path):
    cfg = load_profile(PROFILE)  # the shipped profile
    assert (cfg.scheduler, cfg.height, cfg.width) == ("DDIM", 512, 512) and "dog" in cfg.varieties
    text = PROFILE.read_text()
    cases = {"scheduler: DDIM ": ("scheduler: PNDM ", r"scheduler: Value error, unknown scheduler 'PNDM'; "
                                                      r"choose one of DDIM, DPMSolverMultistep, Euler"),
             "width: 512": ("width: 768", "width: Value error, width 768 != height 512"),
             "steps: 50": ("stepz: 50", "stepz: unknown key .*stable_diffusion.SDProfile"),
             "{preposition} the": ("the", r"template: .*uses \['background', 'object'\]")}
    for old, (new, message) in cases.items():
        assert old in text
        bad = tmp_path / "bad.yaml"
        bad.write_text(text.replace(old, new, 1))
        with pytest.raises(ParamsError, match=message):
            load_profile(bad)
    with pytest.raises(ParamsError, match="nope.yaml: profile not found"):
        load_profile(tmp_path / "nope.yaml")
