"""Validated parameters: one section per stage, unknown keys and bad values are errors.

DVC's ``exp run -S`` silently adds misspelled keys to params.yaml, so every stage validates the
whole file before doing any work and names the offending dotted key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from ruamel.yaml import YAMLError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .world.spec import BACKGROUNDS, CLASSES, PREPOSITION


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class World(_Section):
    seed: int = 0
    resolution: int = Field(32, ge=16, le=256)
    generator_train_size: int = Field(30000, gt=0)
    generator_multi_object_share: float = Field(0.1, ge=0, le=1)
    generator_background_only_share: float = Field(0.1, ge=0, le=1)
    generator_implausible_share: float = Field(0.3, ge=0, le=1)
    real_train_size: int = Field(2000, gt=0)
    real_val_size: int = Field(500, gt=0)
    max_objects: int = Field(3, ge=1, le=8)
    captions: int = Field(100000, gt=0)
    shard_size: int = Field(1000, gt=0)

    @model_validator(mode="after")
    def _shares_fit(self):
        # the implausible share is of the single-object samples: it is not part of the sum
        if self.generator_background_only_share + self.generator_multi_object_share > 1:
            raise ValueError(f"world.generator_background_only_share ({self.generator_background_only_share}) + "
                             f"world.generator_multi_object_share ({self.generator_multi_object_share}) must be <= 1: "
                             f"they are shares of the same samples")
        return self


class TrainGenerator(_Section):
    seed: int = 0
    threads: int = Field(2, ge=1)  # torch threads (docs/decisions.md#toy-generator)
    steps: int = Field(4500, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(100, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    cond_dropout: float = Field(0.1, ge=0, lt=1)
    channels: list[int] = Field(default_factory=lambda: [32, 64, 64], min_length=3)
    attention_heads: int = Field(2, gt=0)
    text_hidden: int = Field(64, gt=0)
    attention_levels: int = Field(3, gt=0)  # UNet levels with self+cross attention, counted from the coarsest
    text_layers: int = Field(0, ge=0)  # 0: each token's embedding carries only its own word
    # What the UNet predicts: "epsilon" (the noise) or "v_prediction" (Salimans & Ho 2022; at high
    # noise, the image itself); see toy.build_train_scheduler and docs/decisions.md#toy-generator
    prediction: Literal["epsilon", "v_prediction"] = "v_prediction"
    checkpoint_every: int = Field(250, gt=0)

    @model_validator(mode="after")
    def _levels_fit(self):
        if self.attention_levels > len(self.channels):
            raise ValueError(f"train_generator.attention_levels: {self.attention_levels} levels asked, the UNet has "
                             f"{len(self.channels)} (len of train_generator.channels)")
        return self

    @model_validator(mode="after")
    def _widths_fit(self):
        # toy.build_unet: GroupNorm with 8 groups; toy.build_text_encoder: 2 attention heads per layer
        odd = [c for c in self.channels if c % 8]
        if odd:
            raise ValueError(f"train_generator.channels: {odd} not a multiple of 8 (the UNet's GroupNorm has 8 groups)")
        if self.text_layers and self.text_hidden % 2:
            raise ValueError(f"train_generator.text_hidden ({self.text_hidden}) must be even when "
                             f"train_generator.text_layers > 0 (the text encoder's layers have 2 attention heads)")
        return self


class Threshold(_Section):
    # fixed: map > value; otsu: Otsu's threshold per map; affinity: paper §3.1.2, the per-image
    # threshold whose mask best matches AffinityNet's foreground (see `refine`). Baselines kept for
    # the paper's comparisons: diffumask (per-class thresholds and resolutions, see `diffumask`) and
    # dataset_diffusion (self-attention exponentiation with an ignored band, see `dataset_diffusion`).
    rule: Literal["fixed", "otsu", "affinity", "diffumask", "dataset_diffusion"] = "affinity"
    value: float = Field(0.5, gt=0, lt=1)


class Refine(_Section):
    """AffinityNet inference on self-attention affinities (used by threshold.rule = affinity).

    ``resolution`` also gives the self-attention that threshold.rule = dataset_diffusion exponentiates:
    an attention store records self-attention at one resolution, so one recording serves both rules
    (the assess stage's mask-quality table scores every rule on the same recording).

    How the defaults were chosen: docs/decisions.md#mask-refinement.
    """

    resolution: int = Field(32, gt=0)  # the self-attention layers whose maps are the affinities
    beta: float = Field(2.0, gt=0)  # affinity power (AffinityNet's beta)
    walk_steps: int = Field(1, ge=0)
    bg_power: float = Field(6.0, gt=0)  # background score (1 - map) ** bg_power (AffinityNet's alpha)
    grid_step: float = Field(0.05, gt=0, lt=0.5)  # candidate thresholds: grid_step, 2*grid_step, ... < 1
    # self-attention is recorded at the last self_attention_steps recorded sampling steps (null: all)
    self_attention_steps: int | None = Field(1, ge=1)


_Unit = Annotated[float, Field(gt=0, lt=1)]
_Resolutions = Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]


def _every_class(value: dict, what: str, key: str, classes: list[str]) -> None:
    """Per-class params name exactly the profile's classes: an unknown name is a typo or another
    profile's class, and a missing one is required rather than defaulted (no class is silently left
    at a value nobody chose)."""
    unknown = sorted(set(value) - set(classes))
    if unknown:
        raise ValueError(f"{key}: unknown class {', '.join(map(repr, unknown))} (profile.classes: {', '.join(classes)})")
    missing = [c for c in classes if c not in value]
    if missing:
        raise ValueError(f"{key}: no {what} for class {', '.join(map(repr, missing))}: every class of "
                         f"profile.classes needs one")


class DiffuMask(_Section):
    """DiffuMask-style masks (Wu et al., ICCV 2023; used by threshold.rule = diffumask): a constant
    threshold and a subset of attention resolutions *per class*.

    A class's map is the mean of its cross-attention maps at its own resolutions (each map
    normalised), its mask that map above its own threshold. The defaults are neutral -- 0.5 and the
    toy generator's finest resolution for every class -- and not tuned on toy data
    (docs/decisions.md#baseline-mask-rules). Every class of profile.classes must be listed in both
    mappings.
    """

    thresholds: dict[str, _Unit] = Field(default_factory=lambda: {c: 0.5 for c in CLASSES})
    resolutions: dict[str, _Resolutions] = Field(default_factory=lambda: {c: [32] for c in CLASSES})


class DatasetDiffusion(_Section):
    """Dataset-Diffusion-style masks (Nguyen et al., NeurIPS 2023; used by threshold.rule =
    dataset_diffusion): the cross-attention map refined by the self-attention raised to the power
    ``tau`` (A_self^tau @ A_cross, self-attention at generate.refine.resolution), min-max normalised;
    object where the refined score >= ``high``, ignored (label 255) where ``low`` <= score < ``high``,
    background below ``low``. The defaults are the authors' (docs/decisions.md#baseline-mask-rules).
    """

    tau: int = Field(4, ge=1)
    low: float = Field(0.5, gt=0, lt=1)
    high: float = Field(0.6, gt=0, lt=1)

    @model_validator(mode="after")
    def _band_ordered(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high}): [low, high) is the ignored band")
        return self


class Generate(_Section):
    seed: int = 0
    threads: int = Field(2, ge=1)  # DVC runs one stage at a time: both cores
    # the text-to-image model: a toy generator folder, a diffusers Stable Diffusion pipeline folder,
    # or a repo id already in the Hugging Face cache (freemask.diffusion.models.load_generator)
    generator: str = "models/generator"
    sampler: Literal["DDIM", "DPMSolverMultistep", "Euler"] = "DDIM"
    height: int | None = Field(None, gt=0)  # the image side; None: the generator's own
    # where a class's single-object prompts are set: profile (the toy world's P(b | o), or a real
    # profile's places) or thesaurus (the backgrounds whose R(o, b) > thesaurus.threshold, in proportion
    # to the captions that mention both; the thesaurus stage's table)
    backgrounds: Literal["profile", "thesaurus"] = "profile"
    per_class: int = Field(60, gt=0)
    scenes_per_background: int = Field(40, ge=0)
    steps: int = Field(20, gt=0)
    guidance: float = Field(3.0, ge=1)
    # guidance only at steps with timestep <= this (1000: every step); see sampling.sample
    guidance_max_timestep: int = Field(400, gt=0, le=1000)
    batch_size: int = Field(32, gt=0)
    # the cross-attention resolutions whose maps are averaged into the object's map
    resolutions: list[int] = Field(default_factory=lambda: [32], min_length=1)
    # maps are averaged over the sampling steps with timestep <= max_timestep
    max_timestep: int = Field(200, gt=0, le=1000)
    threshold: Threshold = Threshold()
    refine: Refine = Refine()
    diffumask: DiffuMask = DiffuMask()
    dataset_diffusion: DatasetDiffusion = DatasetDiffusion()
    shard_size: int = Field(500, gt=0)


class Profile(_Section):
    """What a pipeline segments and how it prompts for it (``freemask.labels``). The defaults are the
    toy world's; a real profile (pipelines/<name>/params.yaml) lists its own."""

    name: str = "toy"
    classes: list[str] = Field(default_factory=lambda: list(CLASSES), min_length=1)  # label i + 1
    unseen: list[str] = Field(default_factory=list)  # zero-shot: classes left out of the real training data
    backgrounds: dict[str, Literal["in", "on"]] = Field(default_factory=lambda: dict(PREPOSITION), min_length=1)
    # class -> the backgrounds its single-object images are prompted on, uniformly (a class not listed:
    # every background); the toy profile uses the world's P(background | class) instead
    places: dict[str, list[str]] = Field(default_factory=dict)
    varieties: dict[str, list[str]] = Field(default_factory=dict)  # class -> sub-class phrases
    template: str = "a photo of a {object} {preposition} the {background}"
    scene_template: str = "a photo of the {background}"
    min_vram_gb: float = Field(0, ge=0)  # freemask doctor: the GPU memory the profile needs
    expected_disk_gb: float = Field(1, ge=0)  # freemask doctor: the free disk its outputs need

    @model_validator(mode="after")
    def _names_known(self):
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("profile.classes: a class is listed twice")
        for key, names in (("profile.unseen", self.unseen), ("profile.places", self.places),
                           ("profile.varieties", self.varieties)):
            unknown = [c for c in names if c not in self.classes]
            if unknown:
                raise ValueError(f"{key}: {', '.join(map(repr, unknown))} not in profile.classes")
        for cls, bgs in self.places.items():
            unknown = [b for b in bgs if b not in self.backgrounds]
            if unknown or not bgs:
                raise ValueError(f"profile.places.{cls}: {unknown or 'empty'}: every entry must be one of "
                                 f"profile.backgrounds ({', '.join(self.backgrounds)})")
        for cls, phrases in self.varieties.items():
            if not phrases or not all(p.strip() for p in phrases):
                raise ValueError(f"profile.varieties.{cls}: empty sub-class list or phrase")
        if self.name == "toy" and tuple(self.classes) != CLASSES:
            raise ValueError(f"profile.classes: the toy profile's classes are the world's ({', '.join(CLASSES)})")
        return self


class Data(_Section):
    """The real dataset of the profile: trains the upper bound, and its val split is the benchmark."""

    format: Literal["voc", "cityscapes", "ade20k"] = "voc"
    root: str = "data/world/voc"  # the toy world's real splits are written in VOC layout
    train_split: str = "train"
    val_split: str = "val"
    # a real dataset's images (and labels, nearest) are resized to this square side; the toy's are kept
    image_size: int = Field(512, ge=8)


class Compose(_Section):
    seed: int = 0
    # random: any object into any scene; same_background: only into scenes of the background the
    # object was generated on; thesaurus: where R(o, b) > thesaurus.threshold (freemask.compose.paste)
    mode: Literal["random", "same_background", "thesaurus"] = "same_background"
    n_images: int = Field(1000, ge=0)
    max_objects: int = Field(3, ge=1, le=8)
    # an object's longer side, drawn uniformly from [min_size, max_size] of the image side
    min_size: float = Field(0.15, gt=0, le=1)
    max_size: float = Field(0.4, gt=0, le=1)
    shard_size: int = Field(500, gt=0)
    # k objects per scene: weights of k = 1..max_objects (null: uniform)
    k_weights: list[float] | None = None
    # where and how large (freemask.compose.placement): learned (the train_placement network), prior
    # (the classes' placement statistics), random (uniform, side in [min_size, max_size]: the ablation)
    placement: Literal["learned", "prior", "random"] = "random"
    max_overlap: float = Field(1.0, ge=0, le=1)  # largest box IoU of an object with one placed before it
    # the pasted object's lighting (freemask.compose.harmonize): the train_harmonizer network,
    # Lab statistics matching, or none
    harmonize: Literal["statistics", "rain", "none"] = "none"
    # an object left with less than this share of its pasted pixels visible is dropped (the scene is
    # composed without it) or its visible pixels are labelled ignore (255)
    min_visible: float = Field(0.0, ge=0, le=1)
    occluded: Literal["drop", "ignore"] = "drop"

    @model_validator(mode="after")
    def _sizes_ordered(self):
        if self.min_size > self.max_size:
            raise ValueError(f"compose.min_size ({self.min_size}) must be <= compose.max_size ({self.max_size}): "
                             f"an object's side is drawn from [min_size, max_size]")
        if self.k_weights is not None:
            if len(self.k_weights) != self.max_objects or min(self.k_weights) < 0 or sum(self.k_weights) <= 0:
                raise ValueError(f"compose.k_weights must be {self.max_objects} (compose.max_objects) non-negative "
                                 f"weights of k = 1..{self.max_objects} with a positive sum, got {self.k_weights}")
        return self


class PlacementParams(_Section):
    """Foreground Object Location (paper §3.2.2): a FOPA-style placement network trained by the
    train_placement stage on the toy world's renders, and how placements are proposed
    (``freemask.compose.placement``; docs/placement.md)."""

    seed: int = 0
    threads: int = Field(2, ge=1)
    selection: Literal["sample", "argmax"] = "sample"  # learned: a cell drawn by score, or the best one
    min_score: float = Field(0.5, ge=0, lt=1)  # learned, sample: only cells scoring at least this
    max_overlap: float = Field(0.3, ge=0, le=1)  # largest IoU of a new box with an already placed one
    max_tries: int = Field(50, gt=0)  # prior / random: draws before a placement is given up
    tolerance: float = Field(0.0, ge=0, lt=0.5)  # the judge's slack in metrics/placement.json
    # the network (freemask.compose.placement_net.NetShape)
    canvas: int = Field(32, ge=16, multiple_of=8)
    width: int = Field(16, gt=0, multiple_of=4)
    features: int = Field(8, gt=0)
    scale_min: float = Field(0.12, gt=0, lt=1)
    scale_max: float = Field(0.66, gt=0, le=1)
    n_scales: int = Field(24, ge=2)
    class_conditioned: bool = True  # the networks are told the cut-out's class (docs/placement.md)
    # training data: the toy world's renderer, or the generate stage's own images (any profile)
    source: Literal["renderer", "generated"] = "renderer"
    val_every: int = Field(5, ge=2)  # generated: every val_every-th object of a class held out
    support_height: float = Field(0.08, gt=0, lt=1)  # generated: a placement is in a class's support when a
    support_size: float = Field(1.25, gt=1)  # harvested one is this close in centre height and side ratio
    # per example, a scene, a cut-out, and this many placements of each label
    examples: int = Field(3000, gt=0)
    positives: int = Field(8, gt=0)
    negatives: int = Field(8, gt=0)
    prior_samples: int = Field(1000, gt=0)  # per class, for mode=prior
    teacher_steps: int = Field(400, gt=0)
    steps: int = Field(1500, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(2e-3, gt=0)
    temperature: float = Field(0.05, gt=0)  # the soft-argmax that gives the spatial term its placement
    # eq. 7 and eq. 4 weights; each triple sums to 1, as in the paper
    lambda_spatial: float = Field(0.2, ge=0, le=1)
    lambda_semantic: float = Field(0.3, ge=0, le=1)
    lambda_heatmap: float = Field(0.5, ge=0, le=1)
    lambda_iou: float = Field(0.4, ge=0, le=1)
    lambda_center: float = Field(0.4, ge=0, le=1)
    lambda_aspect: float = Field(0.2, ge=0, le=1)
    val_scenes: int = Field(20, gt=0)  # per class, for metrics/placement.json

    @model_validator(mode="after")
    def _weights_sum_to_one(self):
        for keys in (("lambda_spatial", "lambda_semantic", "lambda_heatmap"), ("lambda_iou", "lambda_center", "lambda_aspect")):
            total = sum(getattr(self, k) for k in keys)
            if abs(total - 1) > 1e-6:
                raise ValueError(f"{' + '.join(f'placement.{k}' for k in keys)} = {total:g}; they must sum to 1 (paper eq. 7)")
        if self.scale_min >= self.scale_max:
            raise ValueError(f"placement.scale_min ({self.scale_min}) must be below placement.scale_max ({self.scale_max})")
        return self
class Harmonize(_Section):
    """Harmonization of pasted objects (``freemask.compose.harmonize``; docs/harmonization.md) and
    the RAIN-style network the train_harmonizer stage trains on toy pairs (the same object under
    two lightings)."""

    seed: int = 0
    threads: int = Field(2, ge=1)
    # statistics: the background ring is within ring x the object's bounding-box side of it (0: the
    # whole image outside the mask); strength: the share of the estimated light change applied
    ring: float = Field(0.25, ge=0)
    strength: float = Field(1.0, ge=0, le=1)
    # statistics: where the light reference comes from; renderer: reference_renders toy renders (the
    # toy world's backgrounds only), generated: the generate stage's single-object images
    reference: Literal["renderer", "generated"] = "renderer"
    reference_renders: int = Field(3000, gt=0)
    # rain: the network's width and its training on toy pairs
    width: int = Field(16, gt=0)
    train_pairs: int = Field(6000, gt=0)
    val_pairs: int = Field(400, gt=0)
    steps: int = Field(2000, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0)


# The architecture keys of Train that describe the micro profile; the real profiles fix their own.
MICRO_ARCHITECTURE_KEYS = ("patch_size", "window_size", "backbone_dim", "backbone_depths", "hidden_dim",
                           "encoder_layers", "num_queries", "decoder_layers")


class Train(_Section):
    """Mask2Former (micro tiny-Swin by default, or a paper profile) and its training schedule."""

    seed: int = 0
    # micro: the toy world's tiny Swin (the architecture keys below); r50 / swin_b: the Mask2Former
    # paper's semantic-segmentation configs, which fix every architecture key (leave them at default)
    backbone: Literal["micro", "r50", "swin_b"] = "micro"
    # a local safetensors / PyTorch state dict loaded into the backbone (never downloaded); null = random init
    backbone_weights: str | None = None
    # GPU only (ignored on the CPU, where training is always float32): autocast dtype, "no" = float32
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    checkpoint_every: int = Field(250, gt=0)  # steps between resumable checkpoints (not in the results)
    threads: int = Field(2, ge=1)  # DVC runs one stage at a time: both cores
    steps: int = Field(1600, gt=0)
    batch_size: int = Field(16, gt=0)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float = Field(1.0, ge=0)  # max gradient norm, 0 = off
    color_jitter: float = Field(0.2, ge=0, lt=1)  # brightness and tint jitter of training images
    pixel_noise: float = Field(0.04, ge=0)  # std of Gaussian noise on [0, 1] pixels
    # Random zoom (log-uniform in [min, max]) and shift of training images; [1, 1] = off
    scale_range: list[float] = Field(default_factory=lambda: [0.8, 2.0], min_length=2, max_length=2)
    scale_prob: float = Field(1.0, ge=0, le=1)  # share of training images that get the zoom
    # the side images are resized to (the 32 px toy images: upsampled 2x)
    input_size: int = Field(64, ge=32)
    patch_size: int = Field(2, ge=1)  # backbone stem stride; masks come out at input_size / patch_size
    window_size: int = Field(4, ge=2)
    backbone_dim: int = Field(32, gt=0)  # Swin embed dim, doubled at each of the 4 stages
    backbone_depths: list[int] = Field(default_factory=lambda: [1, 1, 1, 1], min_length=4, max_length=4)
    hidden_dim: int = Field(32, gt=0, multiple_of=32)
    encoder_layers: int = Field(2, gt=0)
    num_queries: int = Field(12, gt=0)
    decoder_layers: int = Field(2, gt=0)
    train_num_points: int = Field(1024, gt=0)
    eval_every: int = Field(200, gt=0)  # held-out mIoU every this many steps, best weights kept
    val_fraction: float = Field(0.1, gt=0, lt=1)  # held out of the TRAINING data for model selection
    # the synthetic images are stored as the target stores its own (JPEG at this quality, 4:2:0
    # chroma, as the toy world's VOC writer) before training; null = as generated (lossless)
    synthetic_jpeg_quality: int | None = Field(95, ge=1, le=100)

    @model_validator(mode="after")
    def _scale_range_ordered(self):
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"train.scale_range: needs 0 < min <= max, got [{lo}, {hi}]")
        return self

    @model_validator(mode="after")
    def _input_fits_backbone(self):
        # the coarsest feature map (stride 8 * the stem's) must be at least 2x2: the pixel decoder
        # GroupNorm-s it and fails on 1x1 maps for a batch of one (checked again in build_model)
        micro = self.backbone == "micro"
        stem, key = (self.patch_size, "train.patch_size") if micro else (4, f"{self.backbone}'s stem stride")
        if self.input_size < 16 * stem:
            raise ValueError(f"train.input_size ({self.input_size}) must be >= 16 * {key} = {16 * stem}")
        return self

    @model_validator(mode="after")
    def _swin_heads_fit(self):
        # profiles.backbone_config: the micro Swin has one head per 32 channels (at least one) in each stage
        widths = [self.backbone_dim * 2**i for i in range(4)]
        odd = [w for w in widths if w % max(1, w // 32)]
        if self.backbone == "micro" and odd:
            raise ValueError(f"train.backbone_dim ({self.backbone_dim}): the Swin stage widths {widths} must divide "
                             f"into their heads (one per 32 channels), {odd} do not; e.g. a multiple of 32")
        return self

    @model_validator(mode="after")
    def _profile_owns_architecture(self):
        if self.backbone == "micro":
            return self
        fields = type(self).model_fields
        changed = [k for k in MICRO_ARCHITECTURE_KEYS if getattr(self, k) != fields[k].get_default(call_default_factory=True)]
        if changed:
            raise ValueError(f"{', '.join(changed)}: set by backbone={self.backbone!r} (the paper's config); "
                             f"these keys describe the micro profile only, leave them at their defaults")
        return self


class Assess(_Section):
    seed: int = 0
    threads: int = Field(2, ge=1)  # DVC runs one stage at a time: both cores
    classifier_steps: int = Field(1000, gt=0)
    renders_per_class: int = Field(30, gt=0)
    # the toy schedule's training timesteps are 0..999
    noise_timesteps: list[Annotated[int, Field(ge=0, lt=1000)]] = Field(default_factory=lambda: [50, 150, 300, 500],
                                                                         min_length=1)
    # mask-quality table (every threshold rule x every resolution subset): generated samples per class,
    # regenerated with the generate params and the seeds of the generate stage's first ones per class
    mask_quality_per_class: int = Field(5, gt=0)
    mask_quality_resolutions: list[_Resolutions] = Field(
        default_factory=lambda: [[32], [16], [8], [32, 16], [32, 16, 8]], min_length=1)


class AffinityNetParams(_Section):
    """The learned affinity network (AffinityNet; ``freemask.masks.affinity_net``): the optional
    alternative to the generator's self-attention as the refinement's affinities. The train_affinity
    stage trains it on the generated objects and their own attention maps (no ground truth: pixels
    at or above ``fg`` are confident object, at or below ``bg`` confident background); the assess
    stage's mask-quality table scores the affinity rule with it beside the self-attention rows, with
    the same walk (generate.refine). The generate stage keeps the self-attention
    (docs/decisions.md#learned-affinity-network).
    """

    seed: int = 0
    threads: int = Field(2, ge=1)
    features: int = Field(16, gt=0)  # feature channels whose L1 distance gives the affinity
    width: int = Field(32, gt=0, multiple_of=4)  # conv channels (GroupNorm with 4 groups)
    radius: int = Field(4, ge=2)  # pixel pairs closer than this get an affinity (0 beyond)
    steps: int = Field(400, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0)
    fg: float = Field(0.6, gt=0, le=1)
    bg: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _confident_bands_apart(self):
        if not self.bg < self.fg:
            raise ValueError(f"affinity_net.bg ({self.bg}) must be below affinity_net.fg ({self.fg})")
        return self


class Evaluate(_Section):
    threads: int = Field(2, ge=1)  # DVC runs one stage at a time: both cores
    batch_size: int = Field(32, gt=0)
    # a second val split rendered with this world seed (never used to choose anything)
    fresh_world_seed: int = Field(2026, ge=0)
    # Table 3's layout: group -> member classes, scored with every other class as background;
    # None: the profile's own (metrics.evaluation.PROFILE_GROUPINGS)
    groups: dict[str, list[str]] | None = None


class Thesaurus(_Section):
    """The Adaptive Matching Thesaurus (paper eq. 3), read by ``stages/thesaurus.py``."""

    corpus: str = "data/world/captions.txt"  # a caption corpus: .txt, .jsonl, .parquet (file or folder), COCO .json
    format: Literal["auto", "txt", "jsonl", "parquet", "coco"] = "auto"  # auto: from the suffix
    field: str = "caption"  # the caption column of JSONL and parquet (LAION: TEXT)
    vocabulary: str | None = None  # YAML of objects/backgrounds -> words; None: the toy world's
    # an object may join a scene of background b when R(o, b) is above this (compose.mode=thesaurus)
    threshold: float = Field(0.05, ge=0, lt=1)


class Report(_Section):
    grid_samples: int = Field(16, gt=0)


class Gallery(_Section):
    """The dataset gallery (``freemask.reports.gallery``), read by ``stages/gallery.py``: generated
    single-object samples with their masks and filter scores in one static HTML page."""

    threads: int = Field(2, ge=1)
    batch_size: int = Field(32, gt=0)  # images per forward pass of the segmenter that scores them
    # at most this many samples, taken in turn from each class in key order (the toy world has 480)
    samples: int = Field(1000, gt=0)
    scale: int = Field(4, ge=1, le=16)  # nearest-neighbour enlargement of the images in the page


class Active(_Section):
    """Adversarial active learning (paper §3.3, Algorithm 1): the ``filter`` stage (see
    docs/active_learning.md).

    Round 0's model is the one ``train_synthetic`` trained on the initial synthetic set; each
    later round generates ``per_class`` fresh single-object samples per class with seeds derived
    from (seed, round), scores them with the current segmenter, keeps the top ``retain`` share,
    adds them to the pool and retrains for ``round_steps`` steps.
    """

    seed: int = 0  # base of the per-round generation seeds (rounds never share a sample)
    threads: int = Field(2, ge=1)
    rounds: int = Field(1, ge=0)  # generate-score-retrain cycles after round 0; 0 = no active learning
    per_class: int = Field(10, gt=0)  # fresh samples per class per round
    retain: float = Field(0.7, gt=0, le=1)  # alpha: share of each round's fresh samples kept (paper: 0.7)
    finetune: bool = True  # True: round r starts from round r-1's weights; False: from scratch
    round_steps: int = Field(150, gt=0)  # segmenter steps in each round after round 0
    round_lr: float | None = Field(0.0003, gt=0)  # learning rate of the rounds after round 0; null = train.lr
    # judging the filter: a fresh mask is bad below this IoU against the oracle segmenter's prediction;
    # this share of a copy of each round's masks is spoilt to measure what the filter catches
    bad_below: float = Field(0.5, gt=0, le=1)
    corrupt_share: float = Field(0.3, ge=0, le=1)


class Finetune(_Section):
    """The "S + R" rows of the paper's Table 2 (``stages/finetune.py``): ``real_images`` real train
    images, drawn by ``seed``; the synthetic-trained segmenter fine-tuned on them at ``lr`` and a
    fresh one trained on them alone at ``train.lr``, both for ``steps`` steps (architecture and
    augmentation from ``train``)."""

    seed: int = 0
    threads: int = Field(2, ge=1)
    real_images: int = Field(100, gt=1)
    steps: int = Field(200, gt=0)
    lr: float = Field(0.0003, gt=0)
    warmup_steps: int = Field(20, ge=0)
    eval_every: int = Field(50, gt=0)
    batch_size: int = Field(32, gt=0)  # val images per forward pass


class Independence(_Section):
    """The Independence-Prior GAN (``freemask.masks.independence``; docs/independence.md): application 1
    learns object masks from box crops of the generated objects (a foreground UNet provider, background
    patches, a spectrally normalised discriminator, then data distillation into a student UNet);
    ``cluster_*`` keys drive application 2's demo on one rendered image of a homogeneous object cluster.
    The optimiser and loss constants are the paper's (Adam beta1 0.5, lr 2e-4 D / 4e-4 G, lambda 1000,
    a 0.25)."""

    seed: int = 0
    threads: int = Field(1, ge=1)
    per_class: bool = True  # one teacher + student per class (the paper's category-specific providers)
    crop_side: int = Field(16, ge=4)  # crops and patches are resized to this (a power of two)
    crop_margin: float = Field(0.25, ge=0, le=2)  # box side grown by this share of it on each side
    patches_per_image: int = Field(4, gt=0)  # background patches cut beside each image's object
    width: int = Field(16, gt=0)  # the UNets' first-level channels (the paper: 64)
    d_width: int = Field(16, gt=0)  # the discriminator's first-level channels (the paper: 64)
    steps: int = Field(1200, gt=0)  # adversarial steps (one D and one G update each)
    batch_size: int = Field(32, gt=0)
    lr_g: float = Field(4e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    area_weight: float = Field(1000.0, ge=0)  # lambda of eq. 7
    area_target: float = Field(0.25, gt=0, lt=1)  # a: the mask area share the penalty pulls to
    distill_steps: int = Field(300, ge=0)  # 0: no student (the teacher's masks are used)
    distill_lr: float = Field(4e-4, gt=0)
    threshold: float = Field(0.5, gt=0, lt=1)  # soft mask -> bool mask
    # application 2 (the cluster demo)
    cluster_class: str = "ball"
    cluster_background: str = "grass"
    cluster_side: int = Field(16, ge=8)  # patch side (a power of two); an instance is 1/1.5 of it, as in the paper
    cluster_resolution: int = Field(96, ge=32)  # side of the rendered cluster image
    cluster_objects: int = Field(150, gt=0)  # instances rendered (later ones occlude earlier ones)
    cluster_layers: int = Field(6, gt=0)  # N: instance layers per composite
    cluster_z_dim: int = Field(5, gt=0)
    cluster_pad: int = Field(8, ge=0)  # layout: pad the instance by this and crop back at random
    cluster_area_target: float = Field(0.25, gt=0, lt=1)
    cluster_info_weight: float = Field(50.0, ge=0)  # beta of the InfoGAN-like term (the paper: 50)
    cluster_steps: int = Field(3000, gt=0)
    cluster_patches: int = Field(2000, gt=0)  # training patches cut from the cluster image

    @model_validator(mode="after")
    def _sides_and_names(self):
        if self.crop_side & (self.crop_side - 1) or self.crop_side < 8:
            raise ValueError(f"independence.crop_side must be a power of two >= 8, got {self.crop_side}")
        if self.cluster_class not in CLASSES:
            raise ValueError(f"independence.cluster_class: unknown class {self.cluster_class!r} "
                             f"(the toy world has {', '.join(CLASSES)})")
        if self.cluster_background not in BACKGROUNDS:
            raise ValueError(f"independence.cluster_background: unknown background {self.cluster_background!r} "
                             f"(the toy world has {', '.join(BACKGROUNDS)})")
        if self.cluster_side & (self.cluster_side - 1):
            raise ValueError(f"independence.cluster_side must be a power of two, got {self.cluster_side}")
        if self.cluster_resolution < 2 * self.cluster_side:
            raise ValueError(f"independence.cluster_resolution ({self.cluster_resolution}) must be at least twice "
                             f"independence.cluster_side ({self.cluster_side})")
        return self


class PaintSeg(_Section):
    """PaintSeg's AMCP mask refinement (``masks.paintseg``; docs/paintseg.md): ``iterations`` rounds of
    an I-step and an O-step, ``n_paintings`` paintings each (PaintSeg's Table A: 5), painted by
    RePaint with ``generator`` (``steps`` DDIM steps, RePaint's ``jump_length`` / ``resample``,
    classifier-free ``guidance`` at timesteps <= ``guidance_max_timestep``) or, if
    ``inpaint_model_path`` is set, by that Stable Diffusion inpainting checkpoint (``steps`` steps,
    ``guidance``). Features: ``colour`` (Lab + position, the toy default), ``affinity`` (the
    AffinityNet at ``affinity_path``), ``unet`` (the generator's decoder, DIFT), ``dino`` (a DINO
    ViT folder at ``dino_path``). ``prompt``: what the initial mask is made from."""

    seed: int = 0
    threads: int = Field(1, ge=1)
    generator: str = "models/generator"
    inpaint_model_path: str | None = None
    n_paintings: int = Field(5, gt=0)
    iterations: int = Field(2, gt=0)
    steps: int = Field(5, gt=0)
    jump_length: int = Field(1, gt=0)
    resample: int = Field(1, gt=0)
    guidance: float = Field(1.0, ge=1)
    guidance_max_timestep: int = Field(400, gt=0, le=1000)
    features: Literal["colour", "affinity", "unet", "dino"] = "colour"
    position_weight: float = Field(0.5, ge=0)  # colour features: weight of the pixel position
    affinity_path: str = "models/affinity_net"
    dino_path: str | None = None
    prompt: Literal["mask", "box", "point"] = "mask"
    grow: int = Field(0, ge=0)  # the I-step inpaints the mask dilated by this many pixels (0: the paper's I-step)
    min_component: int = Field(1, ge=1)  # 8-connected mask components smaller than this (pixels) are dropped
    batch_size: int = Field(8, gt=0)  # images per AMCP batch (each painted n_paintings times per step)

    @model_validator(mode="after")
    def _dino_has_a_path(self):
        if self.features == "dino" and not self.dino_path:
            raise ValueError("paintseg.dino_path: required when paintseg.features is 'dino' (a local DINO ViT folder)")
        if self.jump_length >= self.steps and self.resample > 1:
            raise ValueError(f"paintseg.jump_length ({self.jump_length}) must be below paintseg.steps ({self.steps}) "
                             f"for paintseg.resample > 1 to jump at all")
        return self


class Refiners(_Section):
    """The ``refiners`` stage (``freemask.assess.refiners``): each method of ``methods`` applied to the
    attention masks of the generate stage's first ``per_class`` samples per class and of
    ``renders_per_class`` noised renders per class, ``replicates`` times (the seed spread)."""

    seed: int = 0
    threads: int = Field(2, ge=1)
    methods: list[Literal["paintseg", "independence"]] = Field(
        default_factory=lambda: ["paintseg", "independence"], min_length=1)
    per_class: int = Field(5, gt=0)
    renders_per_class: int = Field(5, gt=0)
    replicates: int = Field(2, ge=1)


# the sections whose ``seed`` the replicate seed (top-level ``seed``) offsets
REPLICATED = ("generate", "compose", "train", "active", "finetune", "refiners")


class Params(_Section):
    # the replicate: added to the seeds of the stochastic data and training stages (REPLICATED), so
    # `dvc exp run --queue -S 'seed=range(1,5)'` queues whole-pipeline repeats
    seed: int = Field(0, ge=0)
    profile: Profile = Profile()
    data: Data = Data()
    world: World = World()
    train_generator: TrainGenerator = TrainGenerator()
    generate: Generate = Generate()
    compose: Compose = Compose()
    placement: PlacementParams = PlacementParams()
    harmonize: Harmonize = Harmonize()
    train: Train = Train()
    assess: Assess = Assess()
    affinity_net: AffinityNetParams = AffinityNetParams()
    evaluate: Evaluate = Evaluate()
    thesaurus: Thesaurus = Thesaurus()
    report: Report = Report()
    gallery: Gallery = Gallery()
    active: Active = Active()
    finetune: Finetune = Finetune()
    independence: Independence = Independence()
    paintseg: PaintSeg = PaintSeg()
    refiners: Refiners = Refiners()

    @model_validator(mode="after")
    def _per_class_params_name_the_classes(self):
        d = self.generate.diffumask
        _every_class(d.thresholds, "threshold", "generate.diffumask.thresholds", self.profile.classes)
        _every_class(d.resolutions, "resolution list", "generate.diffumask.resolutions", self.profile.classes)
        return self

    @model_validator(mode="after")
    def _groups_name_the_classes(self):
        seen: dict[str, str] = {}
        for g, members in (self.evaluate.groups or {}).items():
            if not members:
                raise ValueError(f"evaluate.groups.{g}: a group needs at least one class")
            for m in members:
                if m not in self.profile.classes:
                    raise ValueError(f"evaluate.groups.{g}: {m!r} is not a class of profile {self.profile.name!r}")
                if m in seen:
                    raise ValueError(f"evaluate.groups.{g}: {m!r} is in group {seen[m]!r} too")
                seen[m] = g
        return self

    @model_validator(mode="after")
    def _mask_quality_samples_exist(self):
        n, have = self.assess.mask_quality_per_class, self.generate.per_class
        if n > have:
            raise ValueError(f"assess.mask_quality_per_class: {n} samples per class asked, the generate stage "
                             f"makes {have} (generate.per_class); the table re-makes the stage's first ones")
        return self


    def replicated(self) -> "Params":
        """These params with ``seed`` added to the seed of every section in ``REPLICATED``."""
        if self.seed == 0:
            return self
        return self.model_copy(update={k: getattr(self, k).model_copy(update={"seed": getattr(self, k).seed + self.seed})
                                       for k in REPLICATED})


class ParamsError(ValueError):
    """A params file that does not validate; the message names every bad dotted key."""


def _describe(err: ValidationError, source: str, schema: str = "params.py") -> str:
    lines = [f"{source}: invalid parameters"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "value_error" and isinstance(e.get("input"), dict):
            # a check across keys (a model validator) names them: no dump of the whole section
            msg = str(e["ctx"]["error"])
            lines.append(f"  {msg}" if not key or msg.startswith(f"{key}.") else f"  {key}: {msg}")
        elif not key:
            lines.append(f"  {e['msg']}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (misspelled? see {schema} for the accepted keys)")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def validate(data: dict, source: str = "params") -> Params:
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: expected a mapping of stage sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_describe(err, source)) from None


def parse_yaml(text: str):
    """A params file's data, read as YAML 1.2, the way DVC reads and writes params.yaml: ``dvc exp
    run -S`` writes ``on`` unquoted, which a YAML 1.1 reader (PyYAML) takes for True."""
    from ruamel.yaml import YAML  # a dvc dependency

    return YAML(typ="safe", pure=True).load(text)


def load(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        data = parse_yaml(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None
    except YAMLError as err:  # one line: where, and what the parser expected
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ParamsError(f"{path}: not valid YAML{where}: {what}") from None
    return validate(data, str(path))


def dump_defaults() -> dict:
    return Params().model_dump()
