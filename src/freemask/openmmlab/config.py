"""mmsegmentation 1.x configs for Mask2Former, generated from the ``train`` params.

Pure Python: nothing here imports mmcv, mmseg or mmengine, so configs can be generated (and
tested) on a machine without the ``mmseg`` extra. :func:`build_config` returns the config as a
plain dict with the top-level keys of mmseg 1.2.2's own Mask2Former configs
(``configs/mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py``,
``..._swin-b-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py``) with their ``_base_`` files
(``default_runtime.py`` and the dataset file) folded in; :func:`write_config` renders it as an
mmengine-loadable ``.py`` file, one ``key = value`` per top-level key.

What comes from the params (one ``train`` section drives both backends):

===================  ==================================================================
``seed``             ``randomness.seed``
``steps``            ``train_cfg.max_iters`` and the end of the poly schedule
``warmup_steps``     a linear warm-up before the poly(0.9) decay, as the transformers backend
``eval_every``       ``train_cfg.val_interval``
``batch_size``       ``train_dataloader.batch_size``
``lr``, ``weight_decay``, ``grad_clip``   AdamW and ``optim_wrapper.clip_grad`` (0 = off)
``checkpoint_every`` ``default_hooks.checkpoint.interval``
``input_size``       the square training crop and the resize scale
``mixed_precision``  ``AmpOptimWrapper`` with that dtype, ``OptimWrapper`` for "no"
``backbone``         ``r50`` (ResNet-50) or ``swin_b`` (Swin-B, window 12); ``micro`` has none
``backbone_weights`` the backbone's ``init_cfg`` (a local file; never a URL)
===================  ==================================================================

``backbone_weights`` must hold the *mmseg* backbone's keys (torchvision's ResNet-50 layout, or a
Swin checkpoint as mmseg's ``swin2mmseg`` converter writes it), not the transformers layout the
other backend reads: pass another file with ``backbone_weights=`` when the params name one for
transformers. Without weights the backbone is randomly initialised: the paper's configs download
ImageNet weights from a URL, which this repository never does.

Datasets (``DATASETS``): ``voc`` (PASCAL VOC 2012, 21 classes), ``cityscapes`` (19 train ids;
mmseg reads ``*_gtFine_labelTrainIds.png``, written by mmseg's
``tools/dataset_converters/cityscapes.py``), ``ade20k`` (150 classes, reduce-zero-label) and
``toy`` (the toy world's VOC-layout split ``data/world/voc``: background + the 8 toy classes, as
a ``BaseSegDataset``: ``PascalVOCDataset`` only accepts a subset of VOC's class names).
"""
from __future__ import annotations

import copy
import pprint
from dataclasses import dataclass
from pathlib import Path

from ..data import ade20k, cityscapes, voc
from ..data.common import IGNORE_INDEX, require_dir
from ..io import write_text
from ..params import Train
from ..labels import toy_labels

MEAN = [123.675, 116.28, 103.53]  # ImageNet, 0-255 (mmseg's SegDataPreProcessor)
STD = [58.395, 57.12, 57.375]


@dataclass(frozen=True)
class DatasetSpec:
    """How mmseg reads one of the datasets this repository reads (see docs/datasets.md)."""

    type: str
    default_root: str
    classes: tuple[str, ...]
    train_prefix: dict
    val_prefix: dict
    train_ann_file: str = ""  # a split list (VOC layout); "" = every image under the prefix
    val_ann_file: str = ""
    reduce_zero_label: bool = False
    scale_ratio: int = 4  # resize scale (scale_ratio * input_size, input_size): mmseg's (2048, 512)
    extra: tuple = ()  # further dataset keys, as (key, value) pairs


_VOC_PREFIX = dict(img_path="JPEGImages", seg_map_path="SegmentationClass")
_TOY_NAMES = toy_labels().names

DATASETS: dict[str, DatasetSpec] = {
    "voc": DatasetSpec("PascalVOCDataset", "data/VOCdevkit/VOC2012", voc.CLASS_NAMES, _VOC_PREFIX, _VOC_PREFIX,
                       "ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/val.txt"),
    "cityscapes": DatasetSpec("CityscapesDataset", "data/cityscapes", cityscapes.CLASS_NAMES,
                              dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"),
                              dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"), scale_ratio=2),
    "ade20k": DatasetSpec("ADE20KDataset", "data/ade/ADEChallengeData2016", ade20k.CLASS_NAMES,
                          dict(img_path="images/training", seg_map_path="annotations/training"),
                          dict(img_path="images/validation", seg_map_path="annotations/validation"),
                          reduce_zero_label=True),
    "toy": DatasetSpec("BaseSegDataset", "data/world/voc", _TOY_NAMES, _VOC_PREFIX, _VOC_PREFIX,
                       "ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/val.txt", scale_ratio=1,
                       extra=(("img_suffix", ".jpg"), ("seg_map_suffix", ".png"),
                              ("metainfo", dict(classes=_TOY_NAMES,
                                                palette=[voc.voc_palette(len(_TOY_NAMES))[3 * i: 3 * i + 3]
                                                         for i in range(len(_TOY_NAMES))])))),
}
CITYSCAPES_TRAIN_IDS = "_gtFine_labelTrainIds.png"


def _dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown to the mmseg backend; expected one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def check_dataset(name: str, root: str | Path) -> None:
    """Raise FileNotFoundError naming the first directory or split list mmseg would miss."""
    spec = _dataset_spec(name)
    root = Path(root)
    require_dir(root, f"{name} dataset root (data_root)")
    for prefix in (spec.train_prefix, spec.val_prefix):
        require_dir(root / prefix["img_path"], f"{name} image directory")
        require_dir(root / prefix["seg_map_path"], f"{name} label directory")
    for ann in (spec.train_ann_file, spec.val_ann_file):
        if ann and not (root / ann).is_file():
            raise FileNotFoundError(f"{name} split list {root / ann} not found")
    if name == "cityscapes":
        for prefix in (spec.train_prefix, spec.val_prefix):
            labels = root / prefix["seg_map_path"]
            if next(labels.glob(f"*/*{CITYSCAPES_TRAIN_IDS}"), None) is None:
                raise FileNotFoundError(
                    f"cityscapes: no <city>/*{CITYSCAPES_TRAIN_IDS} under {labels}: mmseg reads train-id labels; "
                    "write them with mmseg's tools/dataset_converters/cityscapes.py (see docs/mmseg.md)")


def _backbone(cfg: Train, weights: str | None) -> tuple[dict, list[int]]:
    """The mmseg backbone dict of ``cfg.backbone`` and its output channels."""
    init_cfg = None if weights is None else dict(type="Pretrained", checkpoint=weights)
    if cfg.backbone == "r50":
        return dict(type="ResNet", depth=50, deep_stem=False, num_stages=4, out_indices=(0, 1, 2, 3),
                    frozen_stages=-1, norm_cfg=dict(type="SyncBN", requires_grad=False), style="pytorch",
                    init_cfg=init_cfg), [256, 512, 1024, 2048]
    if cfg.backbone == "swin_b":
        return dict(type="SwinTransformer", pretrain_img_size=384, embed_dims=128, depths=[2, 2, 18, 2],
                    num_heads=[4, 8, 16, 32], window_size=12, mlp_ratio=4, qkv_bias=True, qk_scale=None,
                    drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.3, patch_norm=True,
                    out_indices=(0, 1, 2, 3), with_cp=False, frozen_stages=-1, init_cfg=init_cfg), [128, 256, 512, 1024]
    if cfg.backbone == "micro":
        raise ValueError("train.backbone: 'micro' (the toy world's tiny Swin) has no mmseg equivalent; "
                         "set train.backbone to 'r50' or 'swin_b' for the mmseg backend")
    raise ValueError(f"train.backbone: unknown profile {cfg.backbone!r} (the mmseg backend has r50, swin_b)")


def _decode_head(num_classes: int, in_channels: list[int]) -> dict:
    """Mask2FormerHead as in mmseg's configs: 100 queries, 6 deformable encoder layers, 9 decoder layers."""
    def attention():
        return dict(embed_dims=256, num_heads=8, attn_drop=0.0, proj_drop=0.0, dropout_layer=None, batch_first=True)

    encoder_layer = dict(
        self_attn_cfg=dict(embed_dims=256, num_heads=8, num_levels=3, num_points=4, im2col_step=64, dropout=0.0,
                           batch_first=True, norm_cfg=None, init_cfg=None),
        ffn_cfg=dict(embed_dims=256, feedforward_channels=1024, num_fcs=2, ffn_drop=0.0,
                     act_cfg=dict(type="ReLU", inplace=True)))
    decoder_layer = dict(
        self_attn_cfg=attention(), cross_attn_cfg=attention(),
        ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, num_fcs=2, act_cfg=dict(type="ReLU", inplace=True),
                     ffn_drop=0.0, dropout_layer=None, add_identity=True))
    return dict(
        type="Mask2FormerHead", in_channels=in_channels, strides=[4, 8, 16, 32], feat_channels=256, out_channels=256,
        num_classes=num_classes, num_queries=100, num_transformer_feat_level=3, align_corners=False,
        pixel_decoder=dict(num_outs=3, norm_cfg=dict(type="GN", num_groups=32), act_cfg=dict(type="ReLU"),
                           encoder=dict(num_layers=6, layer_cfg=encoder_layer, init_cfg=None),
                           positional_encoding=dict(num_feats=128, normalize=True), init_cfg=None),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=128, normalize=True),
        transformer_decoder=dict(return_intermediate=True, num_layers=9, layer_cfg=decoder_layer, init_cfg=None),
        loss_cls=dict(type="mmdet.CrossEntropyLoss", use_sigmoid=False, loss_weight=2.0, reduction="mean",
                      class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(type="mmdet.CrossEntropyLoss", use_sigmoid=True, reduction="mean", loss_weight=5.0),
        loss_dice=dict(type="mmdet.DiceLoss", use_sigmoid=True, activate=True, reduction="mean", naive_dice=True,
                       eps=1.0, loss_weight=5.0),
        train_cfg=dict(
            num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75,
            assigner=dict(type="mmdet.HungarianAssigner", match_costs=[
                dict(type="mmdet.ClassificationCost", weight=2.0),
                dict(type="mmdet.CrossEntropyLossCost", weight=5.0, use_sigmoid=True),
                dict(type="mmdet.DiceCost", weight=5.0, pred_act=True, eps=1.0)]),
            sampler=dict(type="mmdet.MaskPseudoSampler")))


def _paramwise(cfg: Train) -> dict:
    """mmseg's per-parameter multipliers: backbone lr x0.1, no decay on norms and embeddings."""
    no_decay, backbone_no_decay = dict(lr_mult=1.0, decay_mult=0.0), dict(lr_mult=0.1, decay_mult=0.0)
    keys = {"backbone": dict(lr_mult=0.1, decay_mult=1.0)}
    if cfg.backbone == "swin_b":
        depths = [2, 2, 18, 2]
        keys.update({"backbone.patch_embed.norm": backbone_no_decay, "backbone.norm": backbone_no_decay,
                     "absolute_pos_embed": backbone_no_decay, "relative_position_bias_table": backbone_no_decay})
        keys.update({f"backbone.stages.{s}.blocks.{b}.norm": backbone_no_decay
                     for s, n in enumerate(depths) for b in range(n)})
        keys.update({f"backbone.stages.{s}.downsample.norm": backbone_no_decay for s in range(len(depths) - 1)})
    keys.update({"query_embed": no_decay, "query_feat": no_decay, "level_embed": no_decay})
    return dict(custom_keys=keys, norm_decay_mult=0.0)


def _dataloader(spec: DatasetSpec, root: str, train: bool, batch_size: int, num_workers: int, pipeline: list) -> dict:
    dataset = dict(type=spec.type, data_root=root,
                   data_prefix=dict(spec.train_prefix if train else spec.val_prefix))
    ann = spec.train_ann_file if train else spec.val_ann_file
    if ann:
        dataset["ann_file"] = ann
    dataset["reduce_zero_label"] = spec.reduce_zero_label
    dataset.update(spec.extra)
    dataset["pipeline"] = pipeline
    return dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0,
                sampler=dict(type="InfiniteSampler" if train else "DefaultSampler", shuffle=train), dataset=dataset)


def build_config(dataset: str, cfg: Train, *, data_root: str | Path | None = None, work_dir: str | Path | None = None,
                 backbone_weights: str | Path | None = None, num_workers: int = 2, deterministic: bool = False,
                 check_paths: bool = True) -> dict:
    """The mmseg 1.x config (a plain dict) training Mask2Former on ``dataset`` with the ``train`` params.

    ``data_root`` defaults to mmseg's place for the dataset (``data/VOCdevkit/VOC2012``, ...; the toy
    world's ``data/world/voc``); paths are written as given, relative ones resolve against the
    directory mmseg runs in. ``work_dir`` defaults to ``models/mmseg/<dataset>_<backbone>``.
    ``backbone_weights`` overrides ``cfg.backbone_weights``. ``deterministic`` is mmengine's
    ``randomness.deterministic`` (``torch.use_deterministic_algorithms``), off by default: CUDA
    kernels without a deterministic version (mmcv's deformable attention among them) then raise.
    ``check_paths`` checks the dataset directories and the weights file before writing anything.
    """
    spec = _dataset_spec(dataset)
    weights = backbone_weights if backbone_weights is not None else cfg.backbone_weights
    if weights is not None:
        weights = str(weights)
        if "://" in weights:
            raise ValueError(f"train.backbone_weights: {weights!r} is a URL; give a local file (nothing is downloaded)")
    backbone, in_channels = _backbone(cfg, weights)
    root = str(Path(data_root if data_root is not None else spec.default_root))
    if check_paths:
        check_dataset(dataset, root)
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(f"train.backbone_weights: {weights} does not exist "
                                    "(a local file; nothing is downloaded)")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")

    crop = (cfg.input_size, cfg.input_size)
    scale = (spec.scale_ratio * cfg.input_size, cfg.input_size)
    # the toy world's zoom range for its own images; mmseg's (0.5, 2.0) for the real datasets
    ratio_range = tuple(cfg.scale_range) if dataset == "toy" else (0.5, 2.0)
    load_annotations = dict(type="LoadAnnotations", reduce_zero_label=True) if spec.reduce_zero_label \
        else dict(type="LoadAnnotations")
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(load_annotations),
        dict(type="RandomResize", scale=scale, ratio_range=ratio_range, keep_ratio=True),
        dict(type="RandomCrop", crop_size=crop, cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PhotoMetricDistortion"),
        dict(type="PackSegInputs"),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(load_annotations),  # after Resize: the ground truth is scored at its own size
        dict(type="PackSegInputs"),
    ]
    num_classes = len(spec.classes)
    model = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=MEAN, std=STD, bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=IGNORE_INDEX, size=crop, test_cfg=dict(size_divisor=32)),
        backbone=backbone,
        decode_head=_decode_head(num_classes, in_channels),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"))

    val_dataloader = _dataloader(spec, root, False, 1, num_workers, test_pipeline)
    wrapper = "OptimWrapper" if cfg.mixed_precision == "no" else "AmpOptimWrapper"
    optim_wrapper = dict(type=wrapper,
                         optimizer=dict(type="AdamW", lr=cfg.lr, weight_decay=cfg.weight_decay, eps=1e-8,
                                        betas=(0.9, 0.999)),
                         clip_grad=dict(max_norm=cfg.grad_clip, norm_type=2) if cfg.grad_clip > 0 else None,
                         paramwise_cfg=_paramwise(cfg))
    if wrapper == "AmpOptimWrapper":
        optim_wrapper["dtype"] = {"bf16": "bfloat16", "fp16": "float16"}[cfg.mixed_precision]
    warmup = min(cfg.warmup_steps, cfg.steps - 1)
    schedule = [dict(type="LinearLR", start_factor=1.0 / warmup, by_epoch=False, begin=0, end=warmup)] if warmup else []
    schedule.append(dict(type="PolyLR", eta_min=0, power=0.9, begin=warmup, end=cfg.steps, by_epoch=False))

    return copy.deepcopy(dict(  # no shared sub-dicts: a caller may edit one loader's dataset
        default_scope="mmseg",
        custom_imports=dict(imports=["mmdet.models"], allow_failed_imports=False),  # Mask2FormerHead is mmdet's
        env_cfg=dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                     dist_cfg=dict(backend="nccl")),
        randomness=dict(seed=cfg.seed, deterministic=deterministic),
        work_dir=str(Path(work_dir) if work_dir is not None else Path("models/mmseg") / f"{dataset}_{cfg.backbone}"),
        model=model,
        train_dataloader=_dataloader(spec, root, True, cfg.batch_size, num_workers, train_pipeline),
        val_dataloader=val_dataloader,
        test_dataloader=val_dataloader,
        val_evaluator=dict(type="IoUMetric", iou_metrics=["mIoU"]),
        test_evaluator=dict(type="IoUMetric", iou_metrics=["mIoU"]),
        optim_wrapper=optim_wrapper,
        param_scheduler=schedule,
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=cfg.steps, val_interval=cfg.eval_every),
        val_cfg=dict(type="ValLoop"),
        test_cfg=dict(type="TestLoop"),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=min(50, cfg.steps), log_metric_by_epoch=False),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=cfg.checkpoint_every, save_best="mIoU"),
            sampler_seed=dict(type="DistSamplerSeedHook"),
            visualization=dict(type="SegVisualizationHook")),
        vis_backends=[dict(type="LocalVisBackend")],
        visualizer=dict(type="SegLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")], name="visualizer"),
        log_processor=dict(by_epoch=False),
        log_level="INFO",
        load_from=None,
        resume=False,
    ))


def render_config(config: dict, header: str = "") -> str:
    """``config`` as Python source, one ``key = value`` per top-level key (equal dicts give equal text)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value in config.items():
        if not key.isidentifier():
            raise ValueError(f"config key {key!r} is not a Python identifier")
        lines.append(f"{key} = {pprint.pformat(value, width=110, sort_dicts=False)}")
    return "\n".join(lines) + "\n"


def write_config(config: dict, path: str | Path, header: str = "") -> Path:
    """Write ``config`` as an mmengine ``.py`` config (temp file, then renamed into place)."""
    path = Path(path)
    if path.suffix != ".py":
        raise ValueError(f"{path}: mmengine reads a Python config from a .py file")
    write_text(path, render_config(config, header))
    return path
