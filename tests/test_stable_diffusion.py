"""Stable Diffusion through the one generation path, on an SD-1.5-shaped pipeline with tiny random
weights, built from configs, saved to disk and loaded back as a user's checkpoint is: nothing comes
from the hub."""
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from typer.testing import CliRunner

from freemask.attention.recorder import cross_attention_layers, layer_resolutions
from freemask.cli import app
from freemask.data import shards
from freemask.diffusion.models import load_generator
from freemask.generate.dataset import attention_masks, generate_dataset, object_tokens
from freemask.generate.plan import plan_objects
from freemask.labels import from_profile
from freemask.masks.refine import threshold_grid
from freemask.masks.rules import check_fits
from freemask.params import ParamsError, validate

CLASSES = ["plant", "dog", "bird"]
RULES = ["affinity", "otsu", "fixed", "diffumask", "dataset_diffusion"]


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


def _params(folder, rule="affinity", **generate):
    """Params of a three-class profile sampling the tiny SD at 128 px: 16x16 latents, cross- and
    self-attention at 16, 8, 4 and 2."""
    gen = dict(generator=str(folder), steps=2, guidance=7.5, guidance_max_timestep=1000, max_timestep=1000,
               height=128, resolutions=[8, 16], per_class=2, scenes_per_background=1, batch_size=4,
               threshold={"rule": rule}, refine={"resolution": 8},
               diffumask={"thresholds": {c: 0.5 for c in CLASSES}, "resolutions": {"plant": [8], "dog": [8, 16],
                                                                                  "bird": [16]}})
    return validate({"profile": {"name": "sd_test", "classes": CLASSES,
                                 "backgrounds": {"floor": "on", "grass": "on", "sky": "in"},
                                 "places": {"plant": ["floor"], "dog": ["grass"], "bird": ["sky"]},
                                 "varieties": {"plant": ["potted plant"], "bird": ["blue jay", "sparrow"]}},
                     "generate": {**gen, **generate}, "assess": {"mask_quality_per_class": 1}})


def test_sd15_shaped_checkpoint_loads_as_a_generator_of_the_one_path(sd_folder):
    gen = load_generator(sd_folder)
    assert gen.kind == "stable_diffusion" and gen.unet.dtype == torch.float32 and gen.unet.device.type == "cpu"
    assert gen.scale_factor == 8 and gen.latent_side(128) == 16 and gen.latent_side() == 16
    res = layer_resolutions(gen.unet)
    cross = cross_attention_layers(gen.unet)
    # down: 3 attention blocks x 2 layers; mid: 1; up: 3 attention blocks x 3 layers (layers_per_block + 1)
    assert len(cross) == 16
    assert Counter(res[n] for n in cross) == {16: 5, 8: 5, 4: 5, 2: 1}


@pytest.mark.parametrize("rule", RULES)
def test_every_mask_rule_runs_on_stable_diffusion(sd_folder, rule):
    p = _params(sd_folder, rule)
    labels, gen = from_profile(p.profile), load_generator(sd_folder)
    plan = plan_objects(p.generate, labels)[::2]  # one sample of each class
    assert [x.prompt for x in plan][0] == "a photo of a potted plant on the floor"  # pot|ted plant: 3 tokens
    assert object_tokens(gen, plan, labels).index.shape[1] == 3
    images, masks = attention_masks(gen, plan, p.generate, labels)
    assert images.dtype == np.uint8 and images.shape == (3, 128, 128, 3)
    assert masks.maps.shape == masks.foreground.shape == (3, 128, 128) and np.isfinite(masks.maps).all()
    assert masks.maps.min() >= 0 and masks.maps.max() <= 1  # diffumask: a mean of normalised maps
    if rule == "affinity":  # each mask is its map above the grid threshold the refinement chose for it
        grid = threshold_grid(p.generate.refine.grid_step)
        assert all(any(np.array_equal(f, m > np.float32(t)) for t in grid) for m, f in zip(masks.maps, masks.foreground))
    if rule != "dataset_diffusion":  # the one rule with an undecided band
        assert not masks.ignore.any()
    again_images, again = attention_masks(gen, plan, p.generate, labels)
    assert np.array_equal(images, again_images) and np.array_equal(masks.foreground, again.foreground)


def test_a_sample_does_not_depend_on_its_batch(sd_folder):
    p = _params(sd_folder, "otsu")
    labels, gen = from_profile(p.profile), load_generator(sd_folder)
    plan = plan_objects(p.generate, labels)[:3]
    images, masks = attention_masks(gen, plan, p.generate, labels)
    alone_images, alone = attention_masks(gen, plan[1:2], p.generate, labels)
    # a batch of 1 and of 3 take different kernels: within a rounding step of the uint8 image
    assert np.abs(alone_images[0].astype(int) - images[1]).max() <= 1
    assert np.allclose(alone.maps[0], masks.maps[1], atol=1e-4)


@pytest.mark.parametrize("sampler", ["DPMSolverMultistep", "Euler"])
def test_every_sampler_samples(sd_folder, sampler):
    p = _params(sd_folder, "otsu", sampler=sampler, max_timestep=600)
    labels = from_profile(p.profile)
    images, masks = attention_masks(load_generator(sd_folder), plan_objects(p.generate, labels)[:1], p.generate, labels)
    assert np.isfinite(masks.maps).all() and images.shape == (1, 128, 128, 3)


def test_impossible_requests_are_named_before_sampling(sd_folder):
    gen = load_generator(sd_folder)
    side = gen.latent_side(128)
    with pytest.raises(ParamsError, match=r"generate.resolutions: no cross-attention at \[32\] in this generator "
                                          r"\(its attention layers are at \[2, 4, 8, 16\]\)"):
        check_fits(_params(sd_folder, resolutions=[16, 32]).generate, gen.unet, side=side)
    with pytest.raises(ParamsError, match=r"generate.refine.resolution=32: the generator has no self-attention"):
        check_fits(_params(sd_folder, refine={"resolution": 32}).generate, gen.unet, side=side)
    with pytest.raises(ValueError, match="height 96 is not a multiple of 64"):
        gen.latent_side(96)


def test_the_cli_and_the_stage_give_the_same_mask_for_the_same_prompt_and_seed(sd_folder, tmp_path):
    # the CLI samples one image on generate.threads threads: the same computation, the same bytes
    p = _params(sd_folder, batch_size=1, threads=1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p.model_dump()))
    generate_dataset(p.generate, from_profile(p.profile), tmp_path / "generated")
    samples = dict(shards.read_shards(tmp_path / "generated" / "objects"))
    for key in ("plant_00000", "bird_00001"):  # a phrase of 3 tokens; a variety picked by the seed
        meta = samples[key]["meta.json"]
        out = tmp_path / key
        result = CliRunner().invoke(app, ["generate", meta["prompt"], "--out", str(out), "--params", str(params),
                                          "--seed", str(meta["seed"])])
        assert result.exit_code == 0, result.output
        from PIL import Image

        mask = np.asarray(Image.open(out / "mask.png")) == 255
        assert np.array_equal(mask, samples[key]["label.png"] == CLASSES.index(meta["class"]) + 1)
        assert np.array_equal(np.asarray(Image.open(out / "image.png")), samples[key]["image.png"])




def test_a_missing_model_is_named_and_nothing_touches_the_network(sd_folder, tmp_path, no_network):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: no such model directory$"):
        load_generator(missing)
    with pytest.raises(FileNotFoundError, match=r"^freemask-tests/not-downloaded: no such directory and no such model "
                                                r"in the Hugging Face cache \(.*cache\); freemask never downloads"):
        load_generator("freemask-tests/not-downloaded", cache_dir=tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: not a diffusers pipeline folder"):
        load_generator(tmp_path / "empty")
    shutil.rmtree(sd_folder / "unet")
    with pytest.raises(FileNotFoundError, match=f"^{sd_folder}: incomplete pipeline folder {sd_folder}: no unet/$"):
        load_generator(sd_folder)
    assert no_network == []


def test_a_model_in_the_hf_cache_loads_by_repo_id_offline(sd_folder, tmp_path, no_network):
    """The cache layout ``hf download`` leaves: models--org--name/{refs/main, snapshots/<commit>/}."""
    repo = tmp_path / "cache" / "models--freemask-tests--tiny-sd"
    commit = "0" * 40
    shutil.copytree(sd_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    gen = load_generator("freemask-tests/tiny-sd", cache_dir=tmp_path / "cache")
    assert Counter(layer_resolutions(gen.unet).values())[16] > 0
    assert "HF_HUB_OFFLINE" not in os.environ  # set for the call only
    assert no_network == []


def test_sub_class_variety_is_chosen_by_seed(sd_folder):
    labels = from_profile(_params(sd_folder).profile)
    picks = [labels.phrase("bird", s) for s in range(20)]
    assert set(picks) == {"blue jay", "sparrow"} and picks == [labels.phrase("bird", s) for s in range(20)]
    assert labels.phrase("dog", 5) == "dog" and labels.prompt("blue jay", "sky") == "a photo of a blue jay in the sky"
