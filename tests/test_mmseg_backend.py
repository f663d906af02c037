"""The optional mmsegmentation backend: config generation (always runs, no mmcv needed), the
weights_only workaround and the missing-extra error (run here), and training / evaluation with
mmseg (skipped unless mmcv compiled with ops is installed: see docs/mmseg.md)."""
from __future__ import annotations

import ast
import importlib
import pickle
import runpy
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from freemask.cli import app
from freemask.data import voc
from freemask.params import Train
from freemask.openmmlab import backend as mmseg_backend
from freemask.openmmlab.backend import MMSegUnavailable, trusted_checkpoints
from freemask.openmmlab.config import DATASETS, build_config, render_config, write_config

R50 = dict(backbone="r50")


def _mmcv_ops_available() -> bool:
    try:
        importlib.import_module("mmcv._ext")
    except ImportError:
        return False
    return True


needs_mmcv_ops = pytest.mark.skipif(
    not _mmcv_ops_available(),
    reason="mmcv._ext (mmcv compiled with ops) cannot be imported: install the mmseg extra, see docs/mmseg.md")


def _layout(root, dataset: str):
    """The empty directories (and split lists) mmseg reads for ``dataset`` under ``root``."""
    spec = DATASETS[dataset]
    for prefix in (spec.train_prefix, spec.val_prefix):
        for d in prefix.values():
            (root / d).mkdir(parents=True, exist_ok=True)
    for ann in (spec.train_ann_file, spec.val_ann_file):
        if ann:
            (root / ann).parent.mkdir(parents=True, exist_ok=True)
            (root / ann).write_text("x\n")
    if dataset == "cityscapes":
        for split in ("train", "val"):
            (root / "gtFine" / split / "aachen").mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png").write_bytes(b"")
    return root


@pytest.mark.parametrize("dataset, num_classes, dataset_type, train_prefix, ann_file", [
    ("voc", 21, "PascalVOCDataset", dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
     "ImageSets/Segmentation/train.txt"),
    ("cityscapes", 19, "CityscapesDataset", dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"), None),
    ("ade20k", 150, "ADE20KDataset", dict(img_path="images/training", seg_map_path="annotations/training"), None),
    ("toy", 9, "BaseSegDataset", dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
     "ImageSets/Segmentation/train.txt"),
])
def test_config_per_dataset(tmp_path, dataset, num_classes, dataset_type, train_prefix, ann_file):
    root = _layout(tmp_path / dataset, dataset)
    config = build_config(dataset, Train(**R50), data_root=root)
    head = config["model"]["decode_head"]
    assert config["model"]["type"] == "EncoderDecoder" and head["type"] == "Mask2FormerHead"
    assert head["num_classes"] == num_classes and len(head["loss_cls"]["class_weight"]) == num_classes + 1
    train_ds, val_ds = config["train_dataloader"]["dataset"], config["val_dataloader"]["dataset"]
    assert train_ds["type"] == val_ds["type"] == dataset_type
    assert train_ds["data_root"] == val_ds["data_root"] == str(root)
    assert train_ds["data_prefix"] == train_prefix
    assert train_ds.get("ann_file") == ann_file
    if ann_file:
        assert val_ds["ann_file"] == "ImageSets/Segmentation/val.txt"
    assert config["test_dataloader"] == config["val_dataloader"]
    # reduce-zero-label for ADE20K only, in the dataset and in LoadAnnotations
    zero = dataset == "ade20k"
    assert train_ds["reduce_zero_label"] is zero and val_ds["reduce_zero_label"] is zero
    loads = [t for t in train_ds["pipeline"] + val_ds["pipeline"] if t["type"] == "LoadAnnotations"]
    assert len(loads) == 2 and all(t.get("reduce_zero_label", False) is zero for t in loads)
    if dataset == "toy":
        classes = train_ds["metainfo"]["classes"]
        assert classes[0] == "background" and "balloon" in classes and len(classes) == 9
        assert len(train_ds["metainfo"]["palette"]) == 9


def test_schedule_and_seed_come_from_the_train_params(tmp_path):
    cfg = Train(backbone="swin_b", seed=7, steps=900, warmup_steps=30, batch_size=4, lr=2e-4, weight_decay=0.01,
                grad_clip=0.5, checkpoint_every=300, eval_every=150, input_size=96, mixed_precision="no")
    config = build_config("toy", cfg, data_root=_layout(tmp_path, "toy"), work_dir=tmp_path / "run")
    assert config["randomness"] == dict(seed=7, deterministic=False)
    assert config["train_cfg"] == dict(type="IterBasedTrainLoop", max_iters=900, val_interval=150)
    assert config["train_dataloader"]["batch_size"] == 4
    wrapper = config["optim_wrapper"]
    assert wrapper["type"] == "OptimWrapper" and wrapper["clip_grad"] == dict(max_norm=0.5, norm_type=2)
    assert wrapper["optimizer"]["type"] == "AdamW"
    assert wrapper["optimizer"]["lr"] == 2e-4 and wrapper["optimizer"]["weight_decay"] == 0.01
    warm, poly = config["param_scheduler"]
    assert warm["type"] == "LinearLR" and (warm["begin"], warm["end"]) == (0, 30)
    assert poly["type"] == "PolyLR" and (poly["begin"], poly["end"], poly["power"]) == (30, 900, 0.9)
    assert config["default_hooks"]["checkpoint"]["interval"] == 300
    assert config["model"]["data_preprocessor"]["size"] == (96, 96)
    crop = next(t for t in config["train_dataloader"]["dataset"]["pipeline"] if t["type"] == "RandomCrop")
    assert crop["crop_size"] == (96, 96)
    assert config["work_dir"] == str(tmp_path / "run")
    backbone = config["model"]["backbone"]
    assert backbone["type"] == "SwinTransformer" and backbone["embed_dims"] == 128 and backbone["window_size"] == 12
    assert config["model"]["decode_head"]["in_channels"] == [128, 256, 512, 1024]
    # defaults: bf16 autocast (dropped on the CPU by the backend), no clipping when grad_clip is 0
    config = build_config("toy", Train(**R50, grad_clip=0.0), data_root=tmp_path)
    assert config["optim_wrapper"]["type"] == "AmpOptimWrapper" and config["optim_wrapper"]["dtype"] == "bfloat16"
    assert config["optim_wrapper"]["clip_grad"] is None
    assert config["model"]["backbone"]["type"] == "ResNet" and config["model"]["backbone"]["depth"] == 50


def test_backbone_weights_are_a_local_path_and_nothing_is_a_url(tmp_path):
    root = _layout(tmp_path / "voc", "voc")
    for profile in ("r50", "swin_b"):
        config = build_config("voc", Train(backbone=profile), data_root=root)
        assert config["model"]["backbone"]["init_cfg"] is None  # random init: the paper's configs download
        assert "http" not in repr(config)
        weights = tmp_path / f"{profile}.pth"
        weights.write_bytes(b"")
        config = build_config("voc", Train(backbone=profile, backbone_weights=str(weights)), data_root=root)
        assert config["model"]["backbone"]["init_cfg"] == dict(type="Pretrained", checkpoint=str(weights))
        assert "http" not in repr(config)
    other = tmp_path / "mmseg_layout.pth"
    other.write_bytes(b"")
    config = build_config("voc", Train(backbone="r50", backbone_weights=str(weights)), data_root=root,
                          backbone_weights=other)
    assert config["model"]["backbone"]["init_cfg"]["checkpoint"] == str(other)
    with pytest.raises(ValueError, match=r"train\.backbone_weights: .* is a URL"):
        build_config("voc", Train(backbone="r50", backbone_weights="https://example.org/r50.pth"), data_root=root)
    with pytest.raises(FileNotFoundError, match=r"train\.backbone_weights: .*nowhere\.pth does not exist"):
        build_config("voc", Train(backbone="r50", backbone_weights=str(tmp_path / "nowhere.pth")), data_root=root)


def test_errors_name_the_culprit(tmp_path):
    with pytest.raises(ValueError, match=r"dataset 'coco' is unknown .* voc, cityscapes, ade20k, toy"):
        build_config("coco", Train(**R50), data_root=tmp_path)
    with pytest.raises(ValueError, match=r"train\.backbone: 'micro' .* has no mmseg equivalent"):
        build_config("toy", Train(), data_root=_layout(tmp_path / "toy", "toy"))
    with pytest.raises(FileNotFoundError, match=r"ade20k dataset root \(data_root\) .*nowhere not found"):
        build_config("ade20k", Train(**R50), data_root=tmp_path / "nowhere")
    root = _layout(tmp_path / "ade", "ade20k")
    (root / "annotations" / "validation").rmdir()
    with pytest.raises(FileNotFoundError, match=r"ade20k label directory .*annotations/validation not found"):
        build_config("ade20k", Train(**R50), data_root=root)
    root = _layout(tmp_path / "voc", "voc")
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"voc split list .*ImageSets/Segmentation/val\.txt not found"):
        build_config("voc", Train(**R50), data_root=root)
    root = _layout(tmp_path / "cs", "cityscapes")
    (root / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"labelTrainIds\.png under .*gtFine/val.*converters/cityscapes"):
        build_config("cityscapes", Train(**R50), data_root=root)


def test_written_config_is_deterministic_and_parses_back(tmp_path):
    config = build_config("toy", Train(**R50, seed=3), data_root=_layout(tmp_path, "toy"))
    a, b = tmp_path / "a" / "cfg.py", tmp_path / "b" / "cfg.py"
    write_config(config, a, header="test config")
    write_config(build_config("toy", Train(**R50, seed=3), data_root=tmp_path), b, header="test config")
    assert a.read_bytes() == b.read_bytes()
    assert not list(a.parent.glob("*.tmp"))
    text = a.read_text()
    assert text.startswith("# test config\n")
    parsed = {}
    for node in ast.parse(text).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1
        parsed[node.targets[0].id] = ast.literal_eval(node.value)
    assert parsed == config and list(parsed) == list(config)
    ran = {k: v for k, v in runpy.run_path(str(a)).items() if not k.startswith("__")}
    assert ran == config
    assert render_config(config) == render_config(build_config("toy", Train(**R50, seed=3), data_root=tmp_path))
    with pytest.raises(ValueError, match=r"cfg\.yaml: mmengine reads a Python config from a \.py file"):
        write_config(config, tmp_path / "cfg.yaml")


def test_cli_writes_the_config(tmp_path):
    root = _layout(tmp_path / "toy", "toy")
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  backbone: r50\n  steps: 20\n")
    out = tmp_path / "cfg" / "toy.py"
    result = CliRunner().invoke(app, ["mmseg-config", "toy", "--out", str(out), "--params", str(params),
                                      "--data-root", str(root), "--work-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    ran = runpy.run_path(str(out))
    assert ran["train_cfg"]["max_iters"] == 20 and ran["work_dir"] == str(tmp_path / "run")
    params.write_text("train:\n  steps: 20\n")  # backbone micro
    result = CliRunner().invoke(app, ["mmseg-config", "toy", "--out", str(out), "--params", str(params),
                                      "--data-root", str(root)])
    assert result.exit_code == 2 and "train.backbone: 'micro'" in result.output


@pytest.fixture
def no_mmseg(monkeypatch):
    """Make mmcv, mmengine, mmseg and mmdet unimportable, installed or not."""
    for name in ("mmcv", "mmcv._ext", "mmengine", "mmseg", "mmseg.models", "mmdet", "mmdet.models"):
        monkeypatch.setitem(sys.modules, name, None)


def test_without_the_extra_the_backend_names_it(tmp_path, no_mmseg):
    config = tmp_path / "cfg.py"
    write_config(build_config("toy", Train(**R50), data_root=_layout(tmp_path, "toy")), config)
    for call in (lambda: mmseg_backend.train(config), lambda: mmseg_backend.evaluate(config, config)):
        with pytest.raises(MMSegUnavailable, match=r"needs mmcv.*the `mmseg` extra: pip install -e '\.\[mmseg\]'"
                                                   r".*docs/mmseg\.md"):
            call()
    result = CliRunner().invoke(app, ["mmseg-train", str(config)])
    assert result.exit_code == 2 and "`mmseg` extra" in result.output and "docs/mmseg.md" in result.output
    with pytest.raises(FileNotFoundError, match=r"mmseg config .*missing\.py not found"):
        mmseg_backend.train(tmp_path / "missing.py")


def test_mmcv_without_ops_is_refused(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "mmcv", types.ModuleType("mmcv"))  # mmcv-lite: no compiled mmcv._ext
    monkeypatch.setitem(sys.modules, "mmcv._ext", None)
    with pytest.raises(MMSegUnavailable, match=r"mmcv is installed but its compiled ops \(mmcv\._ext\).*mmseg\.md"):
        mmseg_backend.require_mmseg()


@dataclass
class _HubState:  # stands in for mmengine's HistoryBuffer: a class torch's weights_only unpickler refuses
    values: list


def test_trusted_checkpoints_lift_weights_only_for_the_work_dir_only(tmp_path):
    work_dir, elsewhere = tmp_path / "run", tmp_path / "downloads"
    work_dir.mkdir(), elsewhere.mkdir()
    state = {"state_dict": {"w": torch.ones(2)}, "message_hub": _HubState([1.0, 2.0])}
    own, foreign = work_dir / "iter_1.pth", elsewhere / "iter_1.pth"
    torch.save(state, own), torch.save(state, foreign)
    plain = elsewhere / "backbone.pth"
    torch.save({"w": torch.ones(2)}, plain)
    original = torch.load
    with pytest.raises(pickle.UnpicklingError):
        torch.load(own)  # torch >= 2.6 default: weights_only=True
    with trusted_checkpoints(work_dir):
        assert torch.load(own, map_location="cpu")["message_hub"] == _HubState([1.0, 2.0])
        assert torch.equal(torch.load(plain)["w"], torch.ones(2))  # plain weights load as before
        with pytest.raises(pickle.UnpicklingError):
            torch.load(foreign)  # outside the work_dir: torch's default stands
        with pytest.raises(pickle.UnpicklingError):
            torch.load(own, weights_only=True)  # an explicit choice is left alone
    assert torch.load is original
    with pytest.raises(RuntimeError), trusted_checkpoints(work_dir):
        raise RuntimeError("a failed run")
    assert torch.load is original


# --- with mmseg installed (mmcv compiled with ops, mmengine, mmsegmentation 1.2.2, mmdet) ---

def _voc_fixture(root, n: int = 2):
    """``n`` 32 px toy-world images in VOC layout: a square of class c on background; train = val."""
    rng = np.random.default_rng(0)
    ids = []
    for i in range(n):
        image = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
        label = np.zeros((32, 32), np.uint8)
        label[8:24, 8:24] = i % 8 + 1
        image[label > 0] = (200, 40 + 60 * i, 40)
        voc.write_sample(root, f"toy_{i}", image, label)
        ids.append(f"toy_{i}")
    voc.write_split(root, "train", ids)
    voc.write_split(root, "val", ids)
    return root


@needs_mmcv_ops
@pytest.mark.parametrize("profile, millions", [("r50", (40, 50)), ("swin_b", (100, 115))])
def test_model_builds_from_the_config(tmp_path, profile, millions):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    path = write_config(build_config("toy", Train(backbone=profile), data_root=_voc_fixture(tmp_path / "voc")),
                        tmp_path / "cfg.py")
    mmseg_backend.require_mmseg()
    cfg = Config.fromfile(str(path))
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    n = sum(p.numel() for p in model.parameters())
    lo, hi = millions
    assert lo * 1e6 < n < hi * 1e6  # Mask2Former paper: R50 44M, Swin-B 107M
    assert model.decode_head.num_classes == 9


@needs_mmcv_ops
def test_one_iteration_trains_and_evaluates(tmp_path):
    cfg = Train(backbone="r50", steps=1, batch_size=2, input_size=64, eval_every=1, checkpoint_every=1)
    path = write_config(build_config("toy", cfg, data_root=_voc_fixture(tmp_path / "voc"), work_dir=tmp_path / "run",
                                     num_workers=0), tmp_path / "cfg.py")
    work_dir = mmseg_backend.train(path)
    checkpoint = work_dir / "iter_1.pth"
    assert checkpoint.is_file()
    original = torch.load
    miou = mmseg_backend.evaluate(path, checkpoint)  # an mmengine checkpoint: needs the weights_only workaround
    assert torch.load is original
    assert 0.0 <= miou <= 1.0
