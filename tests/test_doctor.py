"""`freemask doctor` on profiles written here, and the tiny SD-shaped checkpoint of tools/make_tiny_sd.py,
built by running that script as a user would."""
import ast
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from freemask import doctor, fixtures
from freemask.cli import app

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "make_tiny_sd.py"


def _make_tiny_sd(out: Path, seed: int = 0) -> Path:
    run = subprocess.run([sys.executable, str(SCRIPT), str(out), "--seed", str(seed)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    return out


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    return _make_tiny_sd(tmp_path_factory.mktemp("weights") / "tiny-sd")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Fixture datasets of every format and a caption corpus, as `python -m freemask.fixtures` writes them."""
    root = tmp_path_factory.mktemp("data")
    fixtures.write_voc(root / "VOCdevkit" / "VOC2012", size=32, n=4)
    fixtures.write_cityscapes(root / "cityscapes", size=32, n=4)
    fixtures.write_ade20k(root / "ADEChallengeData2016", size=32, n=4)
    fixtures.write_captions(root / "captions_train2017.json", n=100)
    return root


FORMATS = {  # data.format -> (root under `data`, splits, classes)
    "voc": ("VOCdevkit/VOC2012", "train", "val", ["aeroplane", "bicycle", "pottedplant", "tvmonitor"]),
    "cityscapes": ("cityscapes", "train", "val", ["person", "rider", "car", "bus", "truck", "train"]),
    "ade20k": ("ADEChallengeData2016", "training", "validation", ["person", "car", "bed", "chair"]),
}


def _params(fmt: str, root: str, generator: str, corpus: str, **profile) -> dict:
    _, train, val, classes = FORMATS[fmt]
    return {"profile": {"name": fmt, "classes": classes, "unseen": [], "min_vram_gb": 0, "expected_disk_gb": 0.001,
                        **profile},
            "generate": {"generator": generator},
            "data": {"format": fmt, "root": root, "train_split": train, "val_split": val},
            "train": {"backbone_weights": None},
            "thesaurus": {"corpus": corpus}}


def _write(folder: Path, params: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def _doctor(*args: str):
    return CliRunner().invoke(app, ["doctor", *args])


def test_make_tiny_sd_writes_an_sd15_shaped_folder_that_loads_and_samples(tiny_sd):
    from diffusers import PNDMScheduler

    from freemask.diffusion.models import load_pipeline

    assert {p.name for p in (tiny_sd / "tokenizer").iterdir()} >= {"vocab.json", "merges.txt"}
    assert not (tiny_sd / "tokenizer" / "tokenizer.json").exists()  # as SD 1.5's own tokenizer folder
    pipe = load_pipeline(tiny_sd, device="cpu")
    tok = pipe.tokenizer
    assert len(tok.tokenize("potted plant")) >= 2 and len(tok.tokenize("motorbike")) >= 2
    assert len(tok.tokenize("tv monitor")) >= 2 and tok.tokenize("dog") == ["dog</w>"]
    text = "Zürich café, 2024! 東京 🙂"  # any text encodes, byte by byte, and decodes back
    ids = tok(text).input_ids
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == text.lower().replace(" ", "")
    unet = pipe.unet
    assert unet.config.sample_size in (8, 16) and pipe.vae_scale_factor in (2, 4)
    cross_levels = {n.split(".")[1] for n in unet.attn_processors if n.startswith("down_blocks") and "attn2" in n}
    assert len(cross_levels) >= 2  # cross-attention at 2 resolutions or more
    assert isinstance(pipe.scheduler, PNDMScheduler)
    assert (pipe.scheduler.config.beta_schedule, pipe.scheduler.config.beta_end) == ("scaled_linear", 0.012)
    image = pipe("a photo of a motorbike on the road", num_inference_steps=2, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    side = unet.config.sample_size * pipe.vae_scale_factor
    assert image.shape == (1, side, side, 3) and np.isfinite(image).all()


def test_make_tiny_sd_is_standalone_and_deterministic(tiny_sd, tmp_path):
    imported = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
                for n in ast.walk(ast.parse(SCRIPT.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    assert imported <= {"argparse", "collections", "pathlib", "torch", "diffusers", "transformers", "tokenizers"}
    assert len(SCRIPT.read_text().splitlines()) < 120
    assert _digest(_make_tiny_sd(tmp_path / "again", seed=0)) == _digest(tiny_sd)


def test_doctor_names_every_missing_path_and_exits_2(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "gpus", lambda: [])  # a CPU machine, whatever runs the test
    absent = tmp_path / "absent"
    params = _params("voc", str(absent / "VOCdevkit" / "VOC2012"), str(absent / "stable-diffusion-v1-5"),
                     "../data/captions_train2017.json", min_vram_gb=10, expected_disk_gb=10**9)
    params["train"]["backbone_weights"] = "weights/r50.safetensors"
    folder = _write(tmp_path / "pipelines" / "voc", params)
    result = _doctor("--profile", "voc", "--pipelines", str(tmp_path / "pipelines"))
    assert result.exit_code == 2
    problems = {line.split(":")[0].split()[1]: line for line in result.output.splitlines() if line.startswith("problem ")}
    named = {"generate.generator": absent / "stable-diffusion-v1-5", "data.root": absent / "VOCdevkit" / "VOC2012",
             "train.backbone_weights": folder / "weights" / "r50.safetensors",  # relative: to the profile folder
             "thesaurus.corpus": tmp_path / "pipelines" / "data" / "captions_train2017.json"}
    assert set(problems) == {*named, "profile.min_vram_gb", "profile.expected_disk_gb"}
    for key, path in named.items():
        assert f"{path} not found: put " in problems[key]
    assert "model_index.json, unet/" in problems["generate.generator"]
    assert "JPEGImages/, SegmentationClass/" in problems["data.root"]
    assert "10 GB of GPU memory needed" in problems["profile.min_vram_gb"]
    assert "ok profile.classes: 4 voc classes" in result.output  # the checks that can pass still run


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_doctor_passes_on_the_smoke_fixtures(fmt, tiny_sd, data, tmp_path, monkeypatch):
    folder = tmp_path / "pipelines" / fmt / "smoke"
    folder.mkdir(parents=True)
    rel = lambda p: os.path.relpath(p, folder)  # noqa: E731  paths relative to the profile folder
    params = _params(fmt, rel(data / FORMATS[fmt][0]), rel(tiny_sd), rel(data / "captions_train2017.json"))
    save_file({"stem.weight": torch.zeros(2, 3)}, folder / "backbone.safetensors")
    params["train"]["backbone_weights"] = "backbone.safetensors"
    _write(folder, params)
    monkeypatch.chdir(tmp_path)  # not the profile folder: its paths resolve against itself all the same
    result = _doctor("--profile", f"{fmt}/smoke", "--pipelines", "pipelines")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "ok generate.generator", "ok data.train_split", "ok data.val_split", "ok profile.classes",
        "ok train.backbone_weights", "ok thesaurus.corpus", "ok profile.min_vram_gb", "ok profile.expected_disk_gb"]
    assert "(1 tensors)" in lines[4] and lines[-1].startswith("doctor: every check passed")


def _lines(folder: Path, params: dict) -> dict[str, str]:
    """The problem lines of ``params`` in ``folder``, by key (one each)."""
    problems = [line for line in doctor.diagnose(_write(folder, params)) if not line.ok]
    assert len({line.key for line in problems}) == len(problems)
    return {line.key: line.text for line in problems}


def test_doctor_says_what_is_wrong_inside_files_that_exist(tiny_sd, data, tmp_path, monkeypatch):
    broken = tmp_path / "broken-sd"
    shutil.copytree(tiny_sd, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (tmp_path / "r50.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "captions.csv").write_text("caption\na dog\n")
    params = _params("cityscapes", str(data / "cityscapes"), str(broken), str(tmp_path / "captions.csv"),
                     classes=["person", "motorbike", "car", "car"], unseen=["bus"])
    params["data"]["val_split"] = "validation"
    params["train"]["backbone_weights"] = str(tmp_path / "r50.pt")
    problems = _lines(tmp_path / "p", params)
    assert "no unet/diffusion_pytorch_model.safetensors" in problems["generate.generator"]
    assert "split 'validation' is unknown; expected one of: train, val" in problems["data.val_split"]
    assert problems["profile.classes"].startswith("'motorbike' (did you mean 'motorcycle'?) not cityscapes class(es)")
    assert problems["profile.classes"].endswith("; 'car' listed twice: list each class once")
    assert "'bus' not in profile.classes" in problems["profile.unseen"]
    assert f"{tmp_path / 'r50.pt'}: not a whole torch.save file" in problems["train.backbone_weights"]
    assert "cannot tell the corpus format from the suffix '.csv'" in problems["thesaurus.corpus"]
    assert "data.train_split" not in problems
    del params["data"]["val_split"], params["profile"]["unseen"]  # unseen may be left out: none
    problems = _lines(tmp_path / "p", params)
    assert problems["data.val_split"] == "missing from params.yaml: set it to a split name of the dataset"
    assert "profile.unseen" not in problems
    params["data"]["format"] = "coco"
    problems = _lines(tmp_path / "p", params)
    assert problems["data.format"] == "'coco' is not a dataset format: set it to one of voc, cityscapes, ade20k"
    assert len(doctor.diagnose(tmp_path / "p")) == len(set(doctor.diagnose(tmp_path / "p")))  # named once


def test_gpu_memory_is_compared_with_the_largest_card(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "gpus", lambda: [("Tesla T4", 14.6), ("GTX 1080", 7.9)])
    folder = _write(tmp_path / "p", _params("voc", "x", "x", "x", min_vram_gb=24))
    [too_small] = [line for line in doctor.diagnose(folder) if line.key == "profile.min_vram_gb"]
    assert not too_small.ok and "the largest GPU here has 14.6 GB" in too_small.text
    _write(folder, _params("voc", "x", "x", "x", min_vram_gb=15))  # a "15 GB" card reports a little less
    [fits] = [line for line in doctor.diagnose(folder) if line.key == "profile.min_vram_gb"]
    assert fits.ok and "Tesla T4 14.6 GB" in fits.text


def test_an_unknown_profile_lists_the_profiles_there(tmp_path):
    _write(tmp_path / "voc", _params("voc", "x", "x", "x"))
    _write(tmp_path / "voc" / "smoke", _params("voc", "x", "x", "x"))
    result = _doctor("--profile", "cityscapes", "--pipelines", str(tmp_path))
    assert result.exit_code == 2
    assert f"no {tmp_path / 'cityscapes' / 'params.yaml'} (profiles in {tmp_path}: voc, voc/smoke)" in result.output


def test_freemask_generate_takes_the_checkpoint_a_users_script_saved(tiny_sd, tmp_path):
    """The folder tools/make_tiny_sd.py saved with diffusers' save_pretrained (not written by freemask)
    works with `freemask generate`, under the voc smoke profile's params (its prompts, sampler and mask
    rule): a phrase the BPE splits into several tokens becomes one mask."""
    from PIL import Image
    from typer.testing import CliRunner

    from freemask.cli import app

    params = Path(__file__).resolve().parents[1] / "pipelines" / "voc_smoke" / "params.yaml"
    out = tmp_path / "plant"
    result = CliRunner().invoke(app, ["generate", "a photo of a potted plant on the table", "--out", str(out),
                                      "--generator", str(tiny_sd), "--params", str(params), "--seed", "3"])
    assert result.exit_code == 0, result.output
    image, mask = np.asarray(Image.open(out / "image.png")), np.asarray(Image.open(out / "mask.png"))
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
    assert set(np.unique(mask)) <= {0, 255} and 0 < (mask == 255).mean() < 1


def test_doctor_on_the_shipped_voc_profile_names_each_path_a_machine_lacks(monkeypatch):
    """pipelines/voc as committed, on a machine without the weights and the data (this one)."""
    monkeypatch.setattr(doctor, "gpus", lambda: [])
    lines = doctor.diagnose(Path(__file__).resolve().parents[1] / "pipelines" / "voc")
    problems = {line.key: line.text for line in lines if not line.ok}
    assert {"generate.generator", "data.root", "train.backbone_weights", "thesaurus.corpus",
            "profile.min_vram_gb"} <= set(problems)
    assert "/models/stable-diffusion-v1-5 not found: put " in problems["generate.generator"]
    assert "/data/VOCdevkit/VOC2012 not found: put " in problems["data.root"]
    assert all(line.ok for line in lines if line.key == "profile.classes")  # the 20 classes are VOC's


def test_a_profile_that_leaves_backbone_weights_out_gets_the_schemas_null(tmp_path):
    params = _params("voc", "x", "x", "x")
    del params["train"]["backbone_weights"]
    [line] = [x for x in doctor.diagnose(_write(tmp_path / "voc", params)) if x.key == "train.backbone_weights"]
    assert line.ok and "random weights" in line.text
