"""transformers' Mask2Former as the semantic segmenter of the toy world, in a micro configuration.

The model is ``Mask2FormerForUniversalSegmentation`` with a tiny randomly initialised Swin
backbone built from config (nothing is downloaded). Class 0 is background and is a class like any
other (it gets its own mask), so ``num_labels`` = background + objects.

Conventions
- images are uint8 RGB (N, H, W, 3); labels uint8 (N, H, W) with ``0..num_labels-1`` and 255 = ignore;
- inputs are resized to ``cfg.input_size`` squared (bilinear for images, nearest for labels) and
  normalised with the ImageNet mean/std, as Mask2FormerImageProcessor does;
- the input size is stored in the saved config as ``backbone_config.image_size`` so that
  :func:`predict` needs nothing but the saved directory;
- ignore pixels are negative in every binary target mask (the reference Mask2Former semantic
  dataset mapper does the same: the ignore label is dropped from the class list).
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..distributed import Ranks
from ..errors import DataError, reason, stage_hint
from ..io import replace_dir, write_json
from ..metrics.segmentation import confusion_matrix, summarize
from ..params import ParamsError, Train
from .checkpoint import Progress, load_checkpoint, save_checkpoint, training_fingerprint
from .profiles import backbone_config, head_sizes, load_backbone_weights

from ..labels import IGNORE_INDEX  # noqa: F401  (re-exported)
_U64 = (1 << 64) - 1
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def _step_seed(seed: int, step: int) -> int:
    """A 63-bit seed derived from (seed, step) (SeedSequence mixes, so nearby pairs do not collide)."""
    return int(np.random.SeedSequence([seed & _U64, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ----------------------------------------------------------------------------------------------- model


def build_model(num_labels: int, cfg: Train, class_names: list[str] | None = None):
    """A randomly initialised Mask2Former of profile ``cfg.backbone`` (weights depend only on
    ``cfg.seed``), its backbone loaded from ``cfg.backbone_weights`` when given."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    if num_labels < 2:
        raise ValueError(f"num_labels counts background as class 0 and must be >= 2, got {num_labels}")
    if class_names is not None and len(class_names) != num_labels:
        raise ValueError(f"{len(class_names)} class names for num_labels={num_labels}")
    if cfg.hidden_dim % 32:
        raise ValueError(f"train.hidden_dim must be a multiple of 32 (GroupNorm(32) in the pixel decoder), got {cfg.hidden_dim}")
    h = head_sizes(cfg)
    p = h["stride"]
    if cfg.input_size < 16 * p:
        # the coarsest feature map (stride 8 * patch_size) must be at least 2x2: the pixel decoder
        # GroupNorm-s it and fails on 1x1 maps for a batch of one
        raise ValueError(f"train.input_size must be >= 16 * train.patch_size = {16 * p}, got {cfg.input_size}")
    names = class_names or (["background"] + [f"class_{i}" for i in range(1, num_labels)])
    config = Mask2FormerConfig(
        backbone_config=backbone_config(cfg),
        feature_size=h["hidden_dim"],
        mask_feature_size=h["hidden_dim"],
        hidden_dim=h["hidden_dim"],
        encoder_feedforward_dim=h["encoder_feedforward"],
        encoder_layers=h["encoder_layers"],
        decoder_layers=h["decoder_layers"],
        num_attention_heads=h["heads"],
        dim_feedforward=h["feedforward"],
        num_queries=h["num_queries"],
        train_num_points=cfg.train_num_points,
        feature_strides=[p, 2 * p, 4 * p, 8 * p],
        common_stride=p,
        ignore_value=IGNORE_INDEX,
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Mask2FormerForUniversalSegmentation(config)
    if cfg.backbone_weights is not None:
        load_backbone_weights(backbone_of(model), cfg.backbone_weights)
    return model


def backbone_of(model) -> torch.nn.Module:
    """The backbone (Swin or ResNet) inside a Mask2FormerForUniversalSegmentation."""
    return model.model.pixel_level_module.encoder


def n_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _input_size(model) -> int:
    size = model.config.backbone_config.image_size
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _to_pixels(images: np.ndarray, size: int, augment=None) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, size, size), bilinear; ``augment`` acts on [0, 1] pixels."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if augment is not None:
        x = augment(x)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def photometric(x: torch.Tensor, g: torch.Generator, jitter: float, noise: float) -> torch.Tensor:
    """Brightness x U(1-j, 1+j), per-channel tint x U(1-j/2, 1+j/2), Gaussian pixel noise; (B, 3, H, W) in [0, 1].

    Scene lighting varies in the toy world and generated samples are grainy; a segmenter that
    never saw either judges them poorly.
    """
    b = x.shape[0]
    if jitter > 0:
        x = x * (1 + jitter * (2 * torch.rand(b, 1, 1, 1, generator=g) - 1))
        x = x * (1 + jitter / 2 * (2 * torch.rand(b, 3, 1, 1, generator=g) - 1))
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1)


def scale_jitter(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, scale_range: tuple[float, float],
                 prob: float = 1.0, ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Random zoom and shift of images (B, C, H, W) and labels (B, H, W), one per image, each
    image jittered with probability ``prob`` (the others keep zoom 1 and no shift).

    The zoom factor is log-uniform in ``scale_range`` (> 1 magnifies, < 1 shrinks); the shift is
    uniform over the positions that keep the view inside the image (zoom in) or the whole image
    inside the view (zoom out). Label pixels the image does not cover become ``ignore_index``;
    image pixels there are 0 (the mean colour, for normalised inputs). Large-scale jitter as in
    Mask2Former's training recipe: it keeps the segmenter from reading a class off its usual
    size and position (in the toy world a ball and a balloon differ by little else).
    """
    lo, hi = scale_range
    b = x.shape[0]
    if lo == hi == 1.0:
        return x, y
    s = torch.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * torch.rand(b, generator=g, dtype=torch.float64)).float()
    s = torch.where(torch.rand(b, generator=g) < prob, s, torch.ones_like(s))
    room = (1 - 1 / s).abs()
    t = room[:, None] * (2 * torch.rand(b, 2, generator=g) - 1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(y[:, None], dtype=torch.float32), grid, mode="nearest",
                           padding_mode="zeros", align_corners=False)[:, 0] > 0.5
    y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].long()
    return x, torch.where(inside, y, torch.full_like(y, ignore_index))


def _resize_labels(labels: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (B, H, W) -> int64 (B, size, size), nearest."""
    y = torch.from_numpy(np.ascontiguousarray(labels)).long()
    if y.shape[-2:] != (size, size):
        y = F.interpolate(y[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    return y


def semantic_to_targets(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(B, H, W) int labels -> Mask2Former ``mask_labels`` [(n_i, H, W) float] and ``class_labels`` [(n_i,) int64].

    One binary mask per class present in the image (background included); ignore pixels are 0 in
    every mask. An image that is entirely ignore gets no target masks.
    """
    mask_labels, class_labels = [], []
    for lab in labels:
        classes = torch.unique(lab)
        classes = classes[classes != ignore_index]
        mask_labels.append((lab[None] == classes[:, None, None]).float())
        class_labels.append(classes.long())
    return mask_labels, class_labels


# ------------------------------------------------------------------------------------------ inference


@torch.no_grad()
def _semantic_scores(model, pixels: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """(B, num_labels, H, W) scores: sum_q softmax(class_q)[:-1] * sigmoid(mask_q), masks upsampled first."""
    out = model(pixel_values=pixels)
    masks = F.interpolate(out.masks_queries_logits, size=out_hw, mode="bilinear", align_corners=False).sigmoid()
    classes = out.class_queries_logits.softmax(-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", classes, masks)


def predict(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Semantic labels uint8 (N, H, W) at the input resolution for uint8 RGB images (N, H, W, 3)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    size = _input_size(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty((n, h, w), np.uint8)
    try:
        for i in range(0, n, batch_size):
            pixels = _to_pixels(images[i : i + batch_size], size).to(device)
            out[i : i + batch_size] = _semantic_scores(model, pixels, (h, w)).argmax(1).to(torch.uint8).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def load_segmenter(path: str | Path):
    """Load a segmenter saved by :func:`train_segmenter` (local files only), in eval mode."""
    from safetensors import SafetensorError
    from transformers import Mask2FormerForUniversalSegmentation

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no saved segmenter at {path} (expected {path / 'config.json'} and model.safetensors; "
                                "run the train stage first)")
    hint = stage_hint(path) or "re-make it with the train stage that writes it"
    if not (path / "model.safetensors").is_file():
        raise DataError(path, "incomplete segmenter folder (no model.safetensors)", hint)
    try:
        model = Mask2FormerForUniversalSegmentation.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, SafetensorError) as err:  # what transformers raises on a damaged file
        where = path / "model.safetensors" if isinstance(err, SafetensorError) else path
        raise DataError(where, f"damaged segmenter ({reason(err)})", hint) from None
    model.eval()
    return model


# ------------------------------------------------------------------------------------------- training


def _split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise ValueError(f"need at least 2 training images to hold some out, got {n}")
    n_val = min(n - 1, max(1, int(round(n * fraction))))
    perm = np.random.default_rng([seed & _U64, 0x5E6]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then poly(0.9) decay to 0 (the Mask2Former schedule)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return max(0.0, 1.0 - frac) ** 0.9


def _evaluate(model, images: np.ndarray, labels: np.ndarray, num_labels: int, names: list[str], batch_size: int) -> dict:
    pred = predict(model, images, batch_size)
    return summarize(confusion_matrix(pred, labels, num_labels, IGNORE_INDEX), names)


def _save_atomically(model, stats: dict, out_dir: Path) -> None:
    def write(tmp: Path) -> None:
        # transformers 5 always writes safetensors; safe_serialization is accepted and ignored.
        model.save_pretrained(str(tmp), safe_serialization=True)
        write_json(tmp / "training.json", stats)

    replace_dir(out_dir, write)


def _init_model(path: str | Path, num_labels: int, size: int):
    model = load_segmenter(path)
    if model.config.num_labels != num_labels:
        raise ValueError(f"{path}: the segmenter to fine-tune has {model.config.num_labels} classes, the data {num_labels}")
    if _input_size(model) != size:
        raise ValueError(f"{path}: the segmenter to fine-tune takes {_input_size(model)}px inputs, "
                         f"train.input_size is {size}")
    return model


def _device(ranks: Ranks) -> torch.device:
    """One GPU per process when there are GPUs (``LOCAL_RANK`` as torchrun sets it), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", ranks.rank)) % torch.cuda.device_count())


def _autocast(cfg: Train, device: torch.device):
    """bf16 / fp16 autocast on a GPU (train.mixed_precision); the CPU always trains in float32."""
    if device.type != "cuda" or cfg.mixed_precision == "no":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float16)


def _optimizer(model, cfg: Train) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or "embed" in name or "relative_position" in name else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )


def _global_batch(cfg: Train, step: int, images: np.ndarray, labels: np.ndarray, train_idx: np.ndarray,
                  bs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``step``'s augmented batch; every draw comes from (seed, step), so every rank makes the
    same one. Also reseeds the global torch RNG (Mask2Former's point sampling) the same way."""
    seed = _step_seed(cfg.seed, step)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    idx = train_idx[torch.randperm(len(train_idx), generator=g)[:bs].numpy()]
    flip = torch.rand(bs, generator=g) < 0.5
    x = _to_pixels(images[idx], cfg.input_size, lambda u: photometric(u, g, cfg.color_jitter, cfg.pixel_noise))
    y = _resize_labels(labels[idx], cfg.input_size)
    x[flip] = x[flip].flip(-1)
    y[flip] = y[flip].flip(-1)
    return scale_jitter(x, y, g, tuple(cfg.scale_range), cfg.scale_prob)


def rank_slice(batch_size: int, ranks: Ranks) -> slice:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    if batch_size < ranks.world_size:
        raise ParamsError(f"train.batch_size={batch_size} (capped at the training images) is smaller than the "
                          f"{ranks.world_size} processes: every rank needs at least one image per step")
    bounds = np.linspace(0, batch_size, ranks.world_size + 1).round().astype(int)
    return slice(int(bounds[ranks.rank]), int(bounds[ranks.rank + 1]))


def _count_masks_globally(model, ranks: Ranks) -> None:
    """Normalise the mask losses by the mean number of target masks per process, all ranks together.

    Then the all-reduced gradient of the mask and dice terms equals the single process's. Done here
    because transformers' own path (when accelerate's PartialState is set up) averages the count
    across processes and then divides by the world size once more.
    """
    def get_num_masks(class_labels, device):
        n = torch.tensor(float(sum(len(c) for c in class_labels)), device=device)
        dist.all_reduce(n)
        return torch.clamp(n / ranks.world_size, min=1)

    model.criterion.get_num_masks = get_num_masks


def _all_reduce_mean(tensors: list[torch.Tensor | None], like: list[torch.Tensor], world_size: int) -> list[torch.Tensor]:
    """Average tensors over the processes in one collective (None counts as zeros shaped like ``like``)."""
    flat = torch.cat([(t if t is not None else torch.zeros_like(ref)).reshape(-1) for t, ref in zip(tensors, like)])
    dist.all_reduce(flat)
    flat /= world_size
    return list(torch.split(flat, [ref.numel() for ref in like]))


def _train_step(model, opt, scaler, cfg: Train, step: int, x: torch.Tensor, y: torch.Tensor, ranks: Ranks) -> float:
    """One optimiser step on this rank's share; gradients (and the reported loss) averaged over ranks."""
    device = next(model.parameters()).device
    mask_labels, class_labels = semantic_to_targets(y.to(device))
    for group in opt.param_groups:
        group["lr"] = cfg.lr * _lr_factor(step, cfg.steps, cfg.warmup_steps)
    opt.zero_grad(set_to_none=True)
    with _autocast(cfg, device):
        loss = model(pixel_values=x.to(device), mask_labels=mask_labels, class_labels=class_labels).loss
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if ranks.world_size > 1:
        params = list(model.parameters())
        *grads, loss = _all_reduce_mean([p.grad for p in params] + [loss.detach().float()],
                                        params + [loss.detach().float()], ranks.world_size)
        for p, gr in zip(params, grads):
            p.grad = gr.view_as(p)
    if not torch.isfinite(loss):  # after the all-reduce: all ranks stop together
        raise FloatingPointError(f"segmenter training diverged at step {step} (loss {loss.item()}); lower train.lr")
    if scaler is not None:
        scaler.unscale_(opt)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return float(loss.item())


def _check_data(images: np.ndarray, labels: np.ndarray, num_labels: int) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.shape != images.shape[:3]:
        raise ValueError(f"labels must be (N, H, W) = {images.shape[:3]}, got {labels.shape}")
    bad = np.setdiff1d(np.unique(labels), np.r_[np.arange(num_labels), IGNORE_INDEX])
    if bad.size:
        raise ValueError(f"labels contain {bad.tolist()}; expected 0..{num_labels - 1} or {IGNORE_INDEX} (ignore)")


def train_segmenter(
    cfg: Train,
    images: np.ndarray,
    labels: np.ndarray,
    num_labels: int,
    out_dir: str | Path,
    class_names: list[str] | None = None,
    progress: bool = True,
    init_from: str | Path | None = None,
    work_dir: str | Path | None = None,
    ranks: Ranks = Ranks(0, 1),
) -> dict:
    """Train a Mask2Former; keep the weights with the best mIoU on a held-out part of the training data.

    Deterministic given ``cfg`` (and the data): batches and augmentations come from a generator
    seeded by (seed, step), and the global torch RNG (used by Mask2Former's point sampling) is
    reseeded the same way every step. Saves ``model.safetensors`` + ``config.json`` +
    ``training.json`` in ``out_dir``.

    ``work_dir``: a checkpoint goes there every ``cfg.checkpoint_every`` steps, and a run finds it
    and resumes (to the same final weights as an uninterrupted run) when it was written for the same
    params and data; it is removed once ``out_dir`` is written. None: no checkpoints.

    ``ranks``: data-parallel training under torchrun (a process group must be open, e.g.
    :func:`freemask.distributed.process_group`): every rank makes the same global batch and trains
    on its slice, gradients are averaged, rank 0 alone evaluates and writes. Returns the stats
    written to ``training.json`` on rank 0 and an empty dict on the other ranks.

    ``init_from``: a folder saved by this function to fine-tune from (its architecture is kept; it
    must have ``num_labels`` classes and ``cfg.input_size``) instead of a fresh model.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    _check_data(images, labels, num_labels)
    names = class_names or (["background"] + [f"class_{i}" for i in range(1, num_labels)])
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    log = tqdm.write if ranks.is_main else (lambda _msg: None)

    train_idx, hold_idx = _split_holdout(len(images), cfg.val_fraction, cfg.seed)
    hold_images, hold_labels = images[hold_idx], labels[hold_idx]
    device = _device(ranks)
    model = build_model(num_labels, cfg, names) if init_from is None else _init_model(init_from, num_labels, size=cfg.input_size)
    model = model.to(device)
    model.train()
    if ranks.world_size > 1:
        _count_masks_globally(model, ranks)
    opt = _optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and cfg.mixed_precision == "fp16" else None
    bs = min(cfg.batch_size, len(train_idx))
    share = rank_slice(bs, ranks)

    ckpt = Path(work_dir) / "checkpoint" if work_dir is not None else None
    fingerprint = training_fingerprint(cfg, images, labels, num_labels, names, ranks.world_size, init_from)
    run, best_state = Progress(), None
    resumed = load_checkpoint(ckpt, fingerprint, cfg.steps, model, opt, log) if ckpt is not None else None
    if resumed is not None:
        run, best_state = resumed
    ranks.barrier()  # every rank has read the checkpoint before rank 0 may replace it

    bar = tqdm(range(run.step, cfg.steps), desc="train segmenter", disable=not (progress and ranks.is_main),
               mininterval=2.0)
    for step in bar:
        x, y = _global_batch(cfg, step, images, labels, train_idx, bs)
        run.losses.append(_train_step(model, opt, scaler, cfg, step, x[share], y[share], ranks))
        run.step = step + 1
        if ranks.is_main and (run.step % cfg.eval_every == 0 or run.step == cfg.steps):
            s = _evaluate(model, hold_images, hold_labels, num_labels, names, 64)
            model.train()
            run.history.append({"step": run.step, "mIoU": s["mIoU"], "loss": float(np.mean(run.losses[-cfg.eval_every :]))})
            if s["mIoU"] > run.best["mIoU"]:
                run.best = {"mIoU": s["mIoU"], "step": run.step, "per_class": s["per_class"]}
                best_state = copy.deepcopy(model.state_dict())
            bar.set_postfix(loss=f"{run.history[-1]['loss']:.3f}", heldout_mIoU=f"{s['mIoU']:.3f}")
        if ranks.is_main and ckpt is not None and run.step % cfg.checkpoint_every == 0 and run.step < cfg.steps:
            save_checkpoint(ckpt, fingerprint, run, model.state_dict(), best_state, opt)

    stats = None
    if ranks.is_main:
        stats = _finish(model, best_state, run, cfg, len(train_idx), len(hold_idx), Path(out_dir))
        if ckpt is not None and ckpt.exists():
            shutil.rmtree(ckpt)
        log(f"train segmenter: {time.time() - t0:.0f} s")
    ranks.barrier()  # the others return only once the outputs are in place
    return stats if stats is not None else {}


def _finish(model, best_state, run: Progress, cfg: Train, n_train: int, n_hold: int, out_dir: Path) -> dict:
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    stats = {
        "steps": cfg.steps,
        "final_loss": float(np.mean(run.losses[-min(len(run.losses), 20) :])),
        "heldout_images": int(n_hold),
        "train_images": int(n_train),
        "heldout_history": run.history,
        "best_step": run.best["step"],
        "best_heldout_mIoU": run.best["mIoU"],
        "best_heldout_per_class": run.best.get("per_class"),
        "n_params": n_parameters(model),
        "input_size": cfg.input_size,
    }  # no wall-clock time here: it would change the stage's output hash from run to run
    _save_atomically(model.cpu(), stats, out_dir)
    return stats
