"""Bad input ends with one line naming the culprit (file, dotted params key, class) and exit status 2.

Each case runs a real stage entry point (``stages/*.py``, through ``run_stage``) or the CLI on tiny
inputs in a temporary folder and checks the exit status, that the error is one ``error:`` line
naming the culprit, and that there is no traceback: in a subprocess (progress bars off, so stderr
is that line alone), or in this process where the stage would import diffusers or transformers
(seconds in a fresh process), with ``runpy`` (the error then the last line after the bars).
"""
from __future__ import annotations

import io
import json
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from freemask.data import shards, voc
from freemask.errors import DataError
from freemask.params import ParamsError, dump_defaults, validate

ROOT = Path(__file__).resolve().parents[1]
STAGES = ROOT / "stages"
LABEL = np.zeros((8, 8), np.uint8)
LABEL[2:6, 2:6] = 1  # a bird


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               FREEMASK_PARAMS=str(cwd / "params.yaml"), TQDM_DISABLE="1", PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _stage(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return _run(cwd, str(STAGES / f"{name}.py"), *args)


def _one_error_line(r: subprocess.CompletedProcess, *names: str) -> str:
    """The run ended with status 2 and stderr is one ``error:`` line naming every one of ``names``."""
    assert r.returncode == 2, f"status {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


def _stage_here(monkeypatch, capsys, cwd: Path, name: str, *args: str) -> str:
    """Run ``stages/<name>.py`` as ``__main__`` in this process from ``cwd``; it must exit with status 2
    and its last stderr line be the only ``error:`` line. Returns that line."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("FREEMASK_PARAMS", str(cwd / "params.yaml"))
    monkeypatch.setattr(sys, "argv", [str(STAGES / f"{name}.py"), *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # any other exception fails the test with its traceback
        runpy.run_path(str(STAGES / f"{name}.py"), run_name="__main__")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and "Traceback" not in err, err[-3000:]
    assert lines and lines[-1].startswith("error: ") and sum(line.startswith("error:") for line in lines) == 1, err
    return lines[-1]


def _params(cwd: Path, **sections) -> dict:
    data = dump_defaults()
    for section in ("generate", "train", "evaluate", "train_generator"):
        data[section]["threads"] = 1
    for section, values in sections.items():
        data[section].update(values)
    (cwd / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return data


@pytest.fixture
def repo(tmp_path) -> Path:
    """A working folder laid out as the repository (dvc.yaml names the stage that writes each output)."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    _params(tmp_path)
    return tmp_path


def _object_shard(path: Path, n: int = 3, label: np.ndarray = LABEL) -> None:
    rng = np.random.default_rng(0)
    shards.write_shard(path, [(f"bird_{i:05d}", {"image.png": rng.integers(0, 255, (8, 8, 3), dtype=np.uint8),
                                                 "label.png": label, "meta.json": {"background": "grass"}})
                              for i in range(n)])


def _voc_split(root: Path, split: str, labels: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    for i, label in labels.items():
        voc.write_sample(root, i, rng.integers(0, 255, (*label.shape, 3), dtype=np.uint8), label)
    voc.write_split(root, split, list(labels))


# ---------------------------------------------------------------------------- the error type


def test_data_error_is_one_line_with_key_line_and_hint():
    err = DataError("a/b.txt", "bad\nvalue", "re-make it", line=3, key="x.y")
    assert str(err) == "x.y: a/b.txt line 3: bad value; re-make it"
    assert isinstance(err, ValueError)
    assert json.dumps(str(err))  # plain text


# ------------------------------------------------- 1. a truncated or corrupt shard (compose)


def test_truncated_shard_names_the_shard_and_the_stage_that_writes_it(repo):
    shard = repo / "data/generated/objects/shard-00000.tar"
    _object_shard(shard)
    shard.write_bytes(shard.read_bytes()[:1500])  # cut inside a member's data
    line = _one_error_line(_stage(repo, "compose"), "data/generated/objects/shard-00000.tar", "truncated or corrupt shard")
    assert "re-run the `generate` stage" in line
    assert not (repo / "data/composed").exists()


def test_a_shard_cut_between_members_is_not_read_as_a_shorter_one(tmp_path):
    """tarfile stops silently at a missing header: only the end-of-archive marker tells."""
    shard = tmp_path / "shard-00000.tar"
    _object_shard(shard)
    whole = shard.read_bytes()
    with tarfile.open(shard) as tar:
        ends = [(info.offset_data + info.size + 511) // 512 * 512 for info in tar]
    for cut in ends[:-1] + [ends[-1], ends[-1] + 512]:
        shard.write_bytes(whole[:cut])
        with pytest.raises(DataError, match="shard-00000.tar: truncated or corrupt shard"):
            list(shards.read_shard(shard))
    shard.write_bytes(whole)
    assert len(list(shards.read_shard(shard))) == 3


def _rewrite_member(shard: Path, name: str, data: bytes) -> None:
    """``shard`` as a whole tar again, its member ``name`` holding ``data``."""
    with tarfile.open(shard) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, content in members:
            content = data if member == name else content
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


@pytest.mark.parametrize("damage, culprit", [
    (lambda s: _rewrite_member(s, "bird_00001.image.png", b"\x89PNG\r\n\x1a\n" + bytes(40)),  # a PNG cut short
     "member bird_00001.image.png does not decode"),
    (lambda s: _rewrite_member(s, "bird_00001.meta.json", b'{"background": '), "member bird_00001.meta.json does not decode"),
    (lambda s: s.write_bytes(s.read_bytes()[:1024 * 5]), "ends without the end-of-archive marker"),
    (lambda s: s.write_bytes(b""), "not a whole tar archive (ReadError: empty file)"),
])
def test_damaged_shards_name_the_shard(repo, damage, culprit, monkeypatch, capsys):
    shard = repo / "data/generated/objects/shard-00000.tar"
    _object_shard(shard)
    damage(shard)
    line = _stage_here(monkeypatch, capsys, repo, "compose")
    assert line.startswith("error: data/generated/objects/shard-00000.tar: truncated or corrupt shard: ") and culprit in line
    assert line.endswith("; delete it and re-run the `generate` stage, which writes it")


def test_sample_without_a_member_names_shard_and_sample(tmp_path):
    shard = tmp_path / "shard-00000.tar"
    shards.write_shard(shard, [("bird_00000", {"image.png": np.zeros((2, 2, 3), np.uint8)})])
    (_, sample), = shards.read_shard(shard)
    with pytest.raises(DataError, match=r"shard-00000\.tar: sample 'bird_00000' has no label\.png member \(it has image\.png\)"):
        sample["label.png"]


# ------------------------------------------------------ 2. an unreadable val JPEG (evaluate)


def test_unreadable_val_jpeg_names_the_file(repo):
    root = repo / "data/world/voc"
    _voc_split(root, "val", {"a": LABEL, "b": LABEL})
    jpeg = root / "JPEGImages/b.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # cut short
    line = _one_error_line(_stage(repo, "evaluate"), "data/world/voc/JPEGImages/b.jpg", "unreadable image")
    assert "re-run the `world` stage" in line
    assert not (repo / "metrics").exists()


# -------------------------------------------------- 3. a label value outside the class table


def test_voc_label_outside_the_toy_classes_names_file_value_and_classes(repo):
    bad = LABEL.copy()
    bad[0, 0] = 12  # a VOC class id (dog), but the toy world has 9 classes
    _voc_split(repo / "data/world/voc", "val", {"a": LABEL, "b": bad})
    _one_error_line(_stage(repo, "evaluate"), "data/world/voc/SegmentationClass/b.png", "class index 12",
                    "valid: 0..8, 255", "1 bird", "8 chair")


def test_shard_label_outside_the_toy_classes_names_shard_sample_and_value(repo):
    bad = LABEL.copy()
    bad[0, 0] = 40
    _object_shard(repo / "data/generated/objects/shard-00000.tar", label=bad)
    _one_error_line(_stage(repo, "train", "synthetic"), "data/generated/objects/shard-00000.tar", "'bird_00000'",
                    "label.png holds [40]", "0..8")


# ---------------------------------------------------- 4. cross-field params (compose sizes)


def test_compose_sizes_out_of_order_are_refused_by_params_validation(repo):
    _params(repo, compose={"min_size": 0.5, "max_size": 0.2})
    r = _stage(repo, "compose")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    # the params house style: the file, then one line per bad key
    assert r.stderr.strip().splitlines() == [
        f"error: {repo / 'params.yaml'}: invalid parameters",
        "  compose.min_size (0.5) must be <= compose.max_size (0.2): an object's side is drawn from [min_size, max_size]"]


def test_compose_in_thesaurus_mode_names_a_missing_or_foreign_thesaurus(repo):
    _params(repo, compose={"mode": "thesaurus"})
    _one_error_line(_stage(repo, "compose"), "data/thesaurus/thesaurus.csv")
    (repo / "data/thesaurus").mkdir(parents=True)
    (repo / "data/thesaurus/thesaurus.csv").write_text("object,background,n_background,n_both,R\ncat,sky,1,1,1.0\n")
    _one_error_line(_stage(repo, "compose"), "data/thesaurus/thesaurus.csv", "no row for aeroplane", "`thesaurus` stage")


def test_thesaurus_stage_names_a_corpus_without_the_caption_field(repo):
    (repo / "c.jsonl").write_text('{"text": "a bird in the sky"}\n')
    _params(repo, thesaurus={"corpus": "c.jsonl"})
    _one_error_line(_stage(repo, "thesaurus"), "c.jsonl", "caption")


@pytest.mark.parametrize("section, values, message", [
    ("compose", {"min_size": 0.5, "max_size": 0.2}, r"compose\.min_size \(0\.5\) must be <= compose\.max_size \(0\.2\)"),
    ("world", {"generator_background_only_share": 0.5, "generator_multi_object_share": 0.6},
     r"world\.generator_background_only_share \(0\.5\) \+ world\.generator_multi_object_share \(0\.6\) must be <= 1"),
    ("train", {"input_size": 40, "patch_size": 3}, r"train\.input_size \(40\) must be >= 16 \* train\.patch_size = 48"),
    ("train", {"backbone": "r50", "input_size": 48}, r"train\.input_size \(48\) must be >= 16 \* r50's stem stride = 64"),
    ("train", {"backbone_dim": 50}, r"train\.backbone_dim \(50\): the Swin stage widths \[50, 100, 200, 400\]"),
    ("train", {"scale_range": [2.0, 1.0]}, r"train\.scale_range: needs 0 < min <= max"),
    ("train_generator", {"channels": [12, 16, 20]}, r"train_generator\.channels: \[12, 20\] not a multiple of 8"),
    ("train_generator", {"text_hidden": 15, "text_layers": 1}, r"train_generator\.text_hidden \(15\) must be even"),
    ("train_generator", {"attention_levels": 4}, r"train_generator\.attention_levels: 4 levels asked"),
    ("assess", {"noise_timesteps": [50, 1000]}, r"assess\.noise_timesteps\.1: Input should be less than 1000"),
])
def test_cross_field_checks_name_the_dotted_keys_and_not_the_whole_section(section, values, message):
    data = dump_defaults()
    data[section].update(values)
    with pytest.raises(ParamsError, match=message) as err:
        validate(data)
    assert "Value error" not in str(err.value) and "(got {" not in str(err.value)
    data[section] = dump_defaults()[section]
    validate(data)  # the defaults pass


def test_params_file_that_is_not_yaml_is_one_line(repo):
    (repo / "params.yaml").write_text("compose:\n  min_size: [0.1\n  max_size: 0.4\n")
    _one_error_line(_stage(repo, "compose"), "params.yaml: not valid YAML at line 3, column 11: expected ',' or ']'")


# --------------------------------- 5. checkpoints are read without unpickling, damaged ones named


@pytest.fixture
def generator_repo(repo, tiny_world):
    from freemask.world.build import generator_sample

    shards.write_shard(repo / "data/world/generator_train/shard-00000.tar",
                       ((f"{i:04d}", generator_sample(tiny_world, i)) for i in range(4)))
    _params(repo, train_generator={"steps": 2, "batch_size": 2, "channels": [8, 16, 16], "text_hidden": 16})
    return repo


def test_truncated_generator_checkpoint_names_the_file(generator_repo, monkeypatch, capsys):
    ckpt = generator_repo / "data/work/train_generator/state.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"step": torch.tensor(1), "w": torch.zeros(1000)}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:-200])
    line = _stage_here(monkeypatch, capsys, generator_repo, "train_generator")
    assert line == ("error: data/work/train_generator/state.pt: not a whole torch.save file (truncated or corrupt); "
                    "delete it to train from the start")
    assert not (generator_repo / "models").exists()


class _RunsCode:
    """Unpickled, this would make a folder: what a weights_only=False load of the file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_generator_checkpoint_is_not_unpickled(generator_repo, monkeypatch, capsys):
    ckpt = generator_repo / "data/work/train_generator/state.pt"
    ckpt.parent.mkdir(parents=True)
    marker = generator_repo / "code_ran"
    torch.save({"fingerprint": _RunsCode(marker), "step": 0}, ckpt)
    line = _stage_here(monkeypatch, capsys, generator_repo, "train_generator")
    assert "data/work/train_generator/state.pt: refused by a weights-only load" in line and "posix.mkdir" in line
    assert not marker.exists()


def test_damaged_segmenter_checkpoint_names_the_file(repo, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    _voc_split(repo / "data/world/voc", "train", {f"t{i}": LABEL for i in range(3)})
    _params(repo, train={"steps": 2, "batch_size": 2, "input_size": 32, "train_num_points": 64})
    ckpt = repo / "data/work/train_real/checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text('{"fingerprint": "')  # cut short
    (ckpt / "model.safetensors").write_bytes(rng.bytes(100))
    line = _stage_here(monkeypatch, capsys, repo, "train", "real")
    assert line.startswith("error: data/work/train_real/checkpoint/state.json: not valid JSON (JSONDecodeError: ")
    assert line.endswith("; delete data/work/train_real/checkpoint to train from the start")


def test_segmenter_checkpoint_files_are_read_safely(tmp_path):
    """model.safetensors and optimizer.pt of a checkpoint whose state matches: damaged -> named."""
    from freemask.segmenters.checkpoint import Progress, load_checkpoint, save_checkpoint

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "ck", "fp", Progress(step=1, losses=[0.5]), model.state_dict(), None, opt)
    # the optimizer's state (tensors, ints, floats, tuples) loads under weights_only=True
    assert load_checkpoint(tmp_path / "ck", "fp", 10, model, opt, log=lambda _: None)[0].step == 1
    for name, problem in (("optimizer.pt", "not a whole torch.save file"), ("model.safetensors", "not a whole safetensors")):
        f = tmp_path / "ck" / name
        good = f.read_bytes()
        f.write_bytes(good[: len(good) // 2])
        with pytest.raises(DataError, match=rf"ck/{name}: {problem}.*delete .*ck to train from the start"):
            load_checkpoint(tmp_path / "ck", "fp", 10, model, opt, log=lambda _: None)
        f.write_bytes(good)


# ----------------------------------------- 6. damaged generator and segmenter folders, the CLI


@pytest.fixture
def saved_generator(repo, tiny_generator):
    from freemask.diffusion.toy import ToyGenerator

    tiny_generator.save(repo / "models/generator")
    return ToyGenerator, repo / "models/generator"


def test_damaged_generator_folder_names_the_part(saved_generator, monkeypatch, capsys):
    _, folder = saved_generator
    f = folder / "text_encoder/model.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    line = _stage_here(monkeypatch, capsys, folder.parents[1], "generate")
    assert line.startswith("error: models/generator/text_encoder: damaged part of the generator (SafetensorError: ")
    assert line.endswith("; re-run the `train_generator` stage, which writes it")
    assert not (folder.parents[1] / "data").exists()


@pytest.mark.parametrize("damage, culprit", [
    ("unet/config.json", r"generator/unet: damaged part of the generator \(OSError: .*not a valid JSON file"),
    ("unet/diffusion_pytorch_model.safetensors", r"generator: incomplete generator folder \(no unet/diffusion_pytorch"),
    ("tokenizer/tokenizer.json", r"generator/tokenizer: damaged part of the generator \(JSONDecodeError"),
    ("scheduler/scheduler_config.json", r"generator/scheduler: damaged part of the generator \(OSError"),
])
def test_each_damaged_generator_part_is_named(saved_generator, damage, culprit):
    load, folder = saved_generator
    f = folder / damage
    if damage.endswith(".safetensors"):
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(DataError, match=culprit):
        load.load(folder)


def test_generate_resolutions_the_generator_lacks_fail_before_outputs_are_touched(saved_generator, monkeypatch, capsys):
    _, folder = saved_generator
    repo = folder.parents[1]
    _params(repo, generate={"resolutions": [64]})
    old = repo / "data/generated/objects/shard-00000.tar"
    _object_shard(old)
    line = _stage_here(monkeypatch, capsys, repo, "generate")
    assert line == ("error: generate.resolutions: no cross-attention at [64] in this generator "
                    "(its attention layers are at [8, 16, 32])")
    assert old.exists()  # the outputs of the previous params are still there


def test_damaged_segmenter_read_by_evaluate_names_the_file(repo, monkeypatch, capsys):
    from freemask.params import Train
    from freemask.segmenters.mask2former import build_model

    _voc_split(repo / "data/world/voc", "val", {"a": LABEL})
    out = repo / "models/segmenter_synthetic"
    build_model(9, Train(input_size=32, threads=1)).save_pretrained(str(out))
    f = out / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    line = _stage_here(monkeypatch, capsys, repo, "evaluate")
    assert line.startswith("error: models/segmenter_synthetic/model.safetensors: damaged segmenter (SafetensorError: ")
    assert line.endswith("; re-run the `train_synthetic` stage, which writes it")


def test_cli_generate_names_a_word_missing_from_the_prompt_and_a_damaged_generator(saved_generator, monkeypatch):
    from typer.testing import CliRunner

    from freemask.cli import app

    _, folder = saved_generator
    monkeypatch.chdir(folder.parents[1])
    base = ["generate", "a photo of a bird on the grass", "--out", "out", "--params", "params.yaml"]
    for args, message in ((["--word", "dog"], "error: word 'dog' does not occur in prompt 'a photo of a bird on the grass'"),
                          (["--word", "cat"], "error: word 'cat' does not occur in prompt"),
                          ([], "error: models/generator/unet: damaged part of the generator (OSError: Unable to load")):
        if not args:
            f = folder / "unet/diffusion_pytorch_model.safetensors"
            f.write_bytes(f.read_bytes()[:100])
        result = CliRunner().invoke(app, base + args)
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines()[-1].startswith(message), result.output
    assert not (folder.parents[1] / "out").exists()


def test_assess_checks_every_rule_s_resolutions_before_it_starts(tiny_generator):
    from freemask.masks.rules import check_fits, check_resolutions
    from freemask.params import Generate

    cfg = Generate(refine={"resolution": 64})  # the fixed rule does not read it; the mask-quality table does
    check_fits(cfg.model_copy(update={"threshold": cfg.threshold.model_copy(update={"rule": "fixed"})}), tiny_generator.unet)
    with pytest.raises(ParamsError, match=r"generate\.refine\.resolution=64: the generator has no self-attention"):
        check_fits(cfg, tiny_generator.unet, every_rule=True)
    with pytest.raises(ParamsError, match=r"assess\.mask_quality_resolutions: no cross-attention at \[4\]"):
        check_resolutions([32, 4], tiny_generator.unet, "assess.mask_quality_resolutions")


def test_report_names_a_damaged_metrics_file(tmp_path):
    _params(tmp_path)
    (tmp_path / "metrics/details").mkdir(parents=True)
    (tmp_path / "metrics/details/eval.json").write_text('{"val": ')  # cut mid-write by hand
    _one_error_line(_stage(tmp_path, "report"), "metrics/details/eval.json", "not valid JSON")
    assert not (tmp_path / "reports/tables.md").exists()
