"""PaintSeg: the painters, the feature extractors, AMCP on toy renders with known truth, the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, ViTConfig, ViTModel
from typer.testing import CliRunner

from freemask.assess.generator import noised_renders
from freemask.cli import app
from freemask.diffusion.models import Generator, load_generator
from freemask.diffusion.painting import RePaintPainter, StableDiffusionInpaintPainter, repaint_schedule
from freemask.masks.features import ColourFeatures, DinoFeatures
from freemask.masks.paintseg import initial_mask_from_box, initial_mask_from_point, initial_masks_from, paintseg
from freemask.params import PaintSeg, ParamsError, validate
from freemask.world.build import prompt as prompt_of

GENERATOR = Path(__file__).resolve().parents[1] / "models" / "generator"
# a few steps and paintings: seconds per test, still a clear improvement over a bad mask
FAST = PaintSeg(steps=4, n_paintings=2, iterations=2)


@pytest.fixture(scope="module")
def toy_gen() -> Generator:
    """The committed toy generator (models/generator)."""
    torch.set_num_threads(1)
    return load_generator(GENERATOR)


@pytest.fixture(scope="module")
def renders():
    images, truth, classes, prompts = noised_renders(1, 3, 32)
    return images[:4], truth[:4], prompts[:4]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a & b).sum((1, 2)) / np.maximum((a | b).sum((1, 2)), 1)


def _grown_boxes(truth: np.ndarray, margin: int = 3) -> np.ndarray:
    out = np.zeros_like(truth)
    for o, t in zip(out, truth):
        ys, xs = np.nonzero(t)
        o[max(ys.min() - margin, 0):ys.max() + margin + 1, max(xs.min() - margin, 0):xs.max() + margin + 1] = True
    return out


def test_the_repaint_schedule_walks_down_with_jumps_back():
    assert repaint_schedule(3, 1, 1) == [(0, 1), (1, 2), (2, 3)]
    moves = repaint_schedule(6, 2, 3)
    assert all(abs(b - a) == 1 for a, b in moves) and moves[-1][1] == 6
    assert all(moves[i][1] == moves[i + 1][0] for i in range(len(moves) - 1))
    up = sum(b < a for a, b in moves)
    assert up == 2 * 2 * 2  # levels 2 and 4, resample - 1 = 2 jumps of 2 levels each
    with pytest.raises(ValueError, match="resample"):
        repaint_schedule(4, 1, 0)


def test_repaint_keeps_the_known_region_and_paints_the_object_away(toy_gen, renders):
    images, truth, prompts = renders
    painter = RePaintPainter(toy_gen, steps=5)
    out = painter.paint(images, ~truth, prompts, [0, 1, 2, 3])
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out[~truth], images[~truth])
    # the object region is repainted as the background around it: far closer to its mean colour
    for img, painted, t in zip(images, out, truth):
        bg = img[~t].astype(float).mean(0)
        before = np.linalg.norm(img[t] - bg, axis=-1).mean()
        after = np.linalg.norm(painted[t] - bg, axis=-1).mean()
        assert after < 0.5 * before


def test_painting_is_deterministic_and_independent_of_the_batch(toy_gen, renders):
    images, truth, prompts = renders
    keep = ~_grown_boxes(truth)
    painter = RePaintPainter(toy_gen, steps=4, jump_length=1, resample=2)
    a = painter.paint(images[:3], keep[:3], prompts[:3], [5, 6, 7])
    assert np.array_equal(a, painter.paint(images[:3], keep[:3], prompts[:3], [5, 6, 7]))
    alone = painter.paint(images[1:2], keep[1:2], prompts[1:2], [6])
    # a batch of 1 and of 3 may take different kernels: within one rounding step of the uint8 image
    assert np.abs(alone[0].astype(int) - a[1]).max() <= 1
    other = painter.paint(images[1:2], keep[1:2], prompts[1:2], [8])
    assert np.abs(other[0].astype(int) - a[1]).max() > 10  # another seed, another painting


def _background(prompt: str) -> str:
    return prompt_of([], prompt.split()[-1])  # 'a photo of a car on the road' -> 'a photo of the road'


def test_amcp_repairs_a_grown_box_and_keeps_a_true_mask(toy_gen, renders):
    images, truth, prompts = renders
    painter = RePaintPainter(toy_gen, steps=FAST.steps)
    boxes = _grown_boxes(truth)
    background = [_background(p) for p in prompts[:3]]
    refined = paintseg(images[:3], boxes[:3], painter, ColourFeatures(), FAST, [0, 1, 2], prompts[:3], background)
    before, after = _iou(boxes[:3], truth[:3]), _iou(refined, truth[:3])
    assert after.mean() > before.mean() + 0.25 and (after > before).all()
    once = FAST.model_copy(update={"iterations": 1})
    kept = paintseg(images[:3], truth[:3].copy(), painter, ColourFeatures(), once, [0, 1, 2], prompts[:3], background)
    assert _iou(kept, truth[:3]).mean() > 0.85
    again = paintseg(images[2:3], boxes[2:3], painter, ColourFeatures(), FAST, [2], prompts[2:3], background[2:])
    assert np.array_equal(again[0], refined[2])  # an image's result does not depend on its batch
    with pytest.raises(ValueError, match="3 images and 1 inpainting prompts"):
        paintseg(images[:3], boxes[:3], painter, ColourFeatures(), FAST, [0, 1, 2], prompts[:3], background[:1])


def test_prompts_become_initial_masks(renders):
    images, truth, _ = renders
    box = initial_mask_from_box((2, 3, 10, 7), (32, 32))
    assert box.sum() == 8 * 4 and box[3, 2] and not box[7, 2]
    with pytest.raises(ValueError, match="box 5,3,2,7"):
        initial_mask_from_box((5, 3, 2, 7), (32, 32))
    for img, t in zip(images, truth):
        ys, xs = np.nonzero(ndi_erode(t))
        k = len(ys) // 2
        region = initial_mask_from_point(img, (int(xs[k]), int(ys[k])), ColourFeatures())
        assert region[ys[k], xs[k]] and _iou(region[None], t[None])[0] > 0.6
    with pytest.raises(ValueError, match="point 40,1 is outside"):
        initial_mask_from_point(images[0], (40, 1), ColourFeatures())
    coarse = truth.copy()
    coarse[1] = False
    assert np.array_equal(initial_masks_from("mask", images, coarse, ColourFeatures()), coarse)
    boxes = initial_masks_from("box", images, coarse, ColourFeatures())
    assert np.array_equal(boxes[0], _grown_boxes(truth[:1], 0)[0]) and not boxes[1].any()
    points = initial_masks_from("point", images, coarse, ColourFeatures())
    assert _iou(points[[0, 2]], truth[[0, 2]]).min() > 0.6 and not points[1].any()
    with pytest.raises(ValueError, match="paintseg.prompt must be"):
        initial_masks_from("scribble", images, coarse, ColourFeatures())


def ndi_erode(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    eroded = ndimage.binary_erosion(mask)
    return eroded if eroded.any() else mask


def test_params_name_the_bad_key():
    with pytest.raises(ParamsError, match="paintseg.dino_path: required"):
        validate({"paintseg": {"features": "dino"}})
    with pytest.raises(ParamsError, match="paintseg.n_paintings"):
        validate({"paintseg": {"n_paintings": 0}})


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def cli_files(tmp_path, renders):
    images, truth, prompts = renders
    params = validate({"paintseg": {**FAST.model_dump(), "generator": str(GENERATOR)}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump()))
    Image.fromarray(images[0]).save(tmp_path / "image.png")
    Image.fromarray(np.where(_grown_boxes(truth[:1])[0], 255, 0).astype(np.uint8)).save(tmp_path / "coarse.png")
    return tmp_path, truth[0], prompts[0]


def test_the_cli_writes_a_refined_mask(cli_files):
    tmp, truth, prompt = cli_files
    ys, xs = np.nonzero(truth)
    box = f"{max(xs.min() - 3, 0)},{max(ys.min() - 3, 0)},{xs.max() + 4},{ys.max() + 4}"
    for option, value in (("--box", box), ("--mask", str(tmp / "coarse.png"))):
        out = tmp / f"out{option}.png"
        result = CliRunner().invoke(app, ["paintseg", str(tmp / "image.png"), option, value, "--prompt", prompt,
                                          "--background-prompt", _background(prompt),
                                          "--out", str(out), "--params", str(tmp / "params.yaml")])
        assert result.exit_code == 0, result.output
        mask = np.asarray(Image.open(out))
        assert set(np.unique(mask)) <= {0, 255}
        assert _iou((mask == 255)[None], truth[None])[0] > _iou(_grown_boxes(truth[None]), truth[None])[0] + 0.2


@pytest.mark.parametrize("args, message", [
    (["--box", "1,2,3"], "--box '1,2,3': expected 4 comma-separated integers"),
    (["--box", "1,2,3,4", "--point", "1,1"], "give exactly one of --box, --point, --mask"),
    (["--point", "99,1"], "point 99,1 is outside the 32x32 image"),
    (["--mask", "missing.png"], "missing.png: no such mask"),
])
def test_the_cli_rejects_bad_input_in_one_line(cli_files, args, message):
    tmp, _, prompt = cli_files
    result = CliRunner().invoke(app, ["paintseg", str(tmp / "image.png"), *args, "--prompt", prompt,
                                      "--out", str(tmp / "out.png"), "--params", str(tmp / "params.yaml")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp / "out.png").exists()


def test_the_cli_names_a_missing_image(cli_files):
    tmp, _, prompt = cli_files
    result = CliRunner().invoke(app, ["paintseg", str(tmp / "nope.png"), "--box", "1,1,5,5", "--prompt", prompt,
                                      "--out", str(tmp / "out.png"), "--params", str(tmp / "params.yaml")])
    assert result.exit_code == 2 and "nope.png: no such image" in result.output


# ------------------------------------------------------------------------- real-profile models, tiny




def test_dino_features_from_a_local_vit_folder(tmp_path, no_network):
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path / "dino")
    dino = DinoFeatures(tmp_path / "dino", device="cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    f = dino(images)
    assert f.shape == (2, 16, 4, 4) and torch.allclose(f.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    assert torch.allclose(dino(images[1:])[0], f[1], atol=1e-5) and not torch.allclose(f[0], f[1], atol=1e-2)
    assert DinoFeatures(tmp_path / "dino", size=64, device="cpu")(images).shape == (2, 16, 8, 8)
    with pytest.raises(FileNotFoundError, match="no DINO ViT folder"):
        DinoFeatures(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a multiple of the patch size 8"):
        DinoFeatures(tmp_path / "dino", size=30)
    assert no_network == []


def _tiny_sd_parts(clip_tokenizer_dir, in_channels: int):
    """An SD-shaped model with tiny random weights: 2-level UNet and VAE (2x), 32 px images."""
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(clip_tokenizer_dir, model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=in_channels, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                        sample_size=32)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


PROMPTS = ["a photo of a dog on the grass", "a photo of a bird in the sky"]


def test_sd_inpainting_checkpoint_paints_offline(tmp_path, clip_tokenizer_dir, no_network):
    pipe = StableDiffusionInpaintPipeline(**_tiny_sd_parts(clip_tokenizer_dir, 9), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "inpaint")
    painter = StableDiffusionInpaintPainter(tmp_path / "inpaint", steps=2, device="cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    keep = np.ones((2, 32, 32), bool)
    keep[:, 8:24, 8:24] = False
    out = painter.paint(images, keep, PROMPTS, [0, 1])
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(out[keep], images[keep]) and not np.array_equal(out[~keep], images[~keep])
    assert np.array_equal(out, painter.paint(images, keep, PROMPTS, [0, 1]))
    assert np.abs(painter.paint(images[1:], keep[1:], PROMPTS[1:], [1])[0].astype(int) - out[1]).max() <= 1
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        StableDiffusionInpaintPainter(tmp_path / "missing")
    assert no_network == []


def test_repaint_works_in_the_latent_space_of_a_latent_model(clip_tokenizer_dir):
    parts = _tiny_sd_parts(clip_tokenizer_dir, 4)
    gen = Generator(parts["unet"].eval(), parts["text_encoder"].eval(), parts["tokenizer"], parts["scheduler"],
                    parts["vae"].eval(), "stable_diffusion")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    keep = np.ones((2, 32, 32), bool)
    keep[:, 9:23, 9:23] = False  # not on the 2x latent grid: the cells it touches are repainted
    painter = RePaintPainter(gen, steps=3, jump_length=1, resample=2)
    out = painter.paint(images, keep, PROMPTS, [0, 1])
    assert np.array_equal(out[keep], images[keep]) and not np.array_equal(out[~keep], images[~keep])
    assert np.array_equal(out, painter.paint(images, keep, PROMPTS, [0, 1]))
    known = painter._latent_keep(keep, 16)
    assert known.shape == (2, 1, 16, 16) and known[0, 0, 4, 4] == 0 and known[0, 0, 3, 3] == 1 and known[0, 0, 11, 11] == 0
