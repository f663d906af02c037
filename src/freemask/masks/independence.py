"""The Independence-Prior GAN (Dai et al., "Learning Segmentation Masks with the Independence Prior",
AAAI) as a mask learner: application 1 of the paper, foreground segmentation of object crops.

The generator composites two category-specific instance providers in stacking order (eq. 5,
``x_i = I_i * m_i + x_{i-1} * (1 - m_i)``, ``x_0`` black):

1. the background provider: a patch sampled from background images, independently of the crop,
   with a mask covering the whole patch (so ``x_1`` is the patch);
2. the foreground provider: a segmentation UNet (:class:`~.independence_nets.MaskUNet`) that takes
   a real object crop and outputs the RGBA layer whose RGB is the crop itself and whose alpha is
   the UNet's soft mask ("concatenating the input RGB image and the corresponding inferred mask").

No layout correction is applied (the paper's ``Delta r = 0`` after cropping by boxes). A spectrally
normalised discriminator tells real crops from composites; the losses are eqs. 6-7 with the area
penalty ``L_area = E[(||m||_1 / A - a)^2]`` (:func:`area_penalty`), read as: D minimises
``-E[log D(x)] - E[log(1 - D(x_g))]`` and G minimises ``-E[log D(x_g)] + lambda L_area`` (the
non-saturating generator loss; the printed eq. 7 has the sign of the first term for a quantity G
maximises). Then data distillation (the paper's appendix): a fresh UNet, the student, learns the
teacher's masks on composites of teacher-carved foregrounds over random background patches, with
horizontal flips, under the smooth-L1 loss of eq. 8 (:func:`smooth_l1`).

Inputs and outputs are arrays: crops ``(N, S, S, 3) uint8`` with ``S = independence.crop_side``,
backgrounds ``(M, H, W, 3) uint8`` with ``H, W >= S``, masks ``(N, S, S) float32`` in [0, 1].
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from ..errors import DataError, reason, stage_hint
from ..io import load_safetensors, read_json, replace_dir
from ..params import Independence
from .independence_nets import Discriminator, MaskUNet, NetShape


def composite(layers_rgb: list[torch.Tensor], layers_mask: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 5: alpha blending in stacking order from a black ``x_0``; layer ``i`` (B, 3, H, W) with
    mask (B, 1, H, W) covers what the layers before it made."""
    if len(layers_rgb) != len(layers_mask) or not layers_rgb:
        raise ValueError(f"{len(layers_rgb)} appearances and {len(layers_mask)} masks: one mask per layer, >= 1 layer")
    x = torch.zeros_like(layers_rgb[0])
    for rgb, m in zip(layers_rgb, layers_mask):
        x = rgb * m + x * (1 - m)
    return x


def area_penalty(masks: torch.Tensor, target: float) -> torch.Tensor:
    """``L_area = E[(||m||_1 / A - a)^2]`` over the (B, ..., H, W) masks' leading dimensions
    (batch, and layers if there are several), A = H * W."""
    return ((masks.flatten(-2).sum(-1) / (masks.shape[-1] * masks.shape[-2]) - target) ** 2).mean()


def smooth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 8 per pixel, averaged: ``4 x^2`` where ``|x| < 0.25``, ``|x|`` elsewhere (x = pred - target)."""
    x = (pred - target).abs()
    return torch.where(x < 0.25, 4 * x * x, x).mean()


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6 as a loss to minimise: ``-E[log D(x)] - E[log(1 - D(x_g))]``, D = sigmoid of the logits."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def g_adv_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 7's adversarial term as a loss to minimise: ``-E[log D(x_g)]``."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def to_input(images: np.ndarray, side: int | None = None, what: str = "crops") -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [-1, 1], checking the side if given."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{what} must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if side is not None and images.shape[1:3] != (side, side):
        raise ValueError(f"{what} are {images.shape[1]}x{images.shape[2]}, the model's side "
                         f"(independence.crop_side) is {side}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@dataclass
class IndependenceModels:
    """A trained teacher: the foreground provider and its discriminator, and the training curves."""

    provider: MaskUNet
    discriminator: Discriminator
    history: dict = field(default_factory=dict)


def _init(seed: int, build):
    """Build a module with weights from ``seed`` without touching the global RNG's state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class BackgroundProvider:
    """Application 1's background provider: a random ``side`` x ``side`` patch of a random background
    image, randomly flipped left-right, drawn with its own generator (independent of the crops)."""

    def __init__(self, backgrounds: np.ndarray, side: int, rng: np.random.Generator):
        b = to_input(backgrounds, what="backgrounds")
        if b.shape[-1] < side or b.shape[-2] < side or not len(b):
            raise ValueError(f"backgrounds are {b.shape[-2]}x{b.shape[-1]} ({len(b)} of them): need at least one, "
                             f"at least independence.crop_side = {side} on each side")
        self.images, self.side, self.rng = b, side, rng

    def sample(self, n: int) -> torch.Tensor:
        _, _, h, w = self.images.shape
        idx = self.rng.integers(0, len(self.images), n)
        ys, xs = self.rng.integers(0, h - self.side + 1, n), self.rng.integers(0, w - self.side + 1, n)
        flip = self.rng.random(n) < 0.5
        out = [self.images[i, :, y:y + self.side, x:x + self.side] for i, y, x in zip(idx, ys, xs)]
        return torch.stack([p.flip(-1) if f else p for p, f in zip(out, flip)])


def _foreground_batch(crops: torch.Tensor, rng: np.random.Generator, n: int) -> torch.Tensor:
    idx = torch.from_numpy(rng.choice(len(crops), size=n, replace=len(crops) < n))
    x = crops[idx]
    flip = torch.from_numpy(rng.random(n) < 0.5)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def train_independence(crops: np.ndarray, backgrounds: np.ndarray, cfg: Independence,
                       progress: bool = True) -> IndependenceModels:
    """Adversarial training of the foreground provider (the teacher) on ``crops`` with background
    patches from ``backgrounds``; the same inputs and ``cfg`` give the same weights on one machine."""
    side = cfg.crop_side
    real_all = to_input(crops, side)
    if len(real_all) < 2:
        raise ValueError(f"{len(real_all)} crops: adversarial training needs at least 2")
    shape = NetShape(side=side, width=cfg.width)
    provider = _init(cfg.seed, lambda: MaskUNet(shape))
    disc = _init(cfg.seed + 1, lambda: Discriminator(NetShape(side=side, width=cfg.d_width)))
    opt_g = torch.optim.Adam(provider.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    rng = np.random.default_rng(cfg.seed)
    bg = BackgroundProvider(backgrounds, side, np.random.default_rng([cfg.seed, 1]))
    hist: dict[str, list[float]] = {"d": [], "g_adv": [], "area": [], "mask_mean": []}
    provider.train(), disc.train()
    for _ in tqdm(range(cfg.steps), desc="independence GAN", disable=not progress):
        n = min(cfg.batch_size, len(real_all))
        real, fg, back = _foreground_batch(real_all, rng, n), _foreground_batch(real_all, rng, n), bg.sample(n)
        m = provider(fg)
        fake = composite([back, fg], [torch.ones_like(m), m])
        loss_d = d_loss(disc(real), disc(fake.detach()))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        adv, area = g_adv_loss(disc(fake)), area_penalty(m, cfg.area_target)
        opt_g.zero_grad()
        (adv + cfg.area_weight * area).backward()
        opt_g.step()
        for k, v in (("d", loss_d), ("g_adv", adv), ("area", area), ("mask_mean", m.mean())):
            hist[k].append(float(v.detach()))
    return IndependenceModels(provider.eval(), disc.eval(), hist)


def predict_masks(net: MaskUNet | IndependenceModels, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Soft masks (N, S, S) float32 in [0, 1] of ``crops`` (N, S, S, 3) uint8 by a provider or student."""
    net = net.provider if isinstance(net, IndependenceModels) else net
    x = to_input(crops, net.shape.side)
    was = net.training
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(x[i:i + batch_size])[:, 0] for i in range(0, len(x), batch_size)]) if len(x) \
            else torch.zeros((0, net.shape.side, net.shape.side))
    net.train(was)
    return out.numpy().astype(np.float32)


def distill(models: IndependenceModels, crops: np.ndarray, backgrounds: np.ndarray, cfg: Independence,
            progress: bool = True) -> tuple[MaskUNet, list[float]]:
    """Data distillation: a student UNet learns the teacher's masks of ``crops`` from composites of
    the teacher-carved crops over random background patches (horizontal flips), smooth-L1 loss (eq. 8).
    Returns the student and its loss per step."""
    side = cfg.crop_side
    x_all = to_input(crops, side)
    m_all = torch.from_numpy(predict_masks(models.provider, crops))[:, None]
    student = _init(cfg.seed + 2, lambda: MaskUNet(NetShape(side=side, width=cfg.width)))
    opt = torch.optim.Adam(student.parameters(), lr=cfg.distill_lr, betas=(cfg.beta1, cfg.beta2))
    rng = np.random.default_rng([cfg.seed, 2])
    bg = BackgroundProvider(backgrounds, side, np.random.default_rng([cfg.seed, 3]))
    losses = []
    student.train()
    for _ in tqdm(range(cfg.distill_steps), desc="independence distill", disable=not progress):
        n = min(cfg.batch_size, len(x_all))
        idx = torch.from_numpy(rng.choice(len(x_all), size=n, replace=len(x_all) < n))
        x, m = x_all[idx], m_all[idx]
        flip = torch.from_numpy(rng.random(n) < 0.5)[:, None, None, None]
        x, m = torch.where(flip, x.flip(-1), x), torch.where(flip, m.flip(-1), m)
        inp = composite([bg.sample(n), x], [torch.ones_like(m), m])
        loss = smooth_l1(student(inp), m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return student.eval(), losses


def save_models(models: IndependenceModels, out_dir: str | Path, student: MaskUNet | None = None) -> None:
    """``provider.safetensors``, ``discriminator.safetensors``, ``student.safetensors`` (if given),
    ``config.json`` (shapes) and ``history.json`` into ``out_dir``, replaced as a whole."""
    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        nets = {"provider": models.provider, "discriminator": models.discriminator}
        if student is not None:
            nets["student"] = student
        for name, net in nets.items():
            save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(tmp / f"{name}.safetensors"))
        config = {"provider": asdict(models.provider.shape), "discriminator": asdict(models.discriminator.shape),
                  "student": asdict(student.shape) if student is not None else None}
        (tmp / "config.json").write_text(json.dumps(config, sort_keys=True, indent=2) + "\n")
        (tmp / "history.json").write_text(json.dumps(models.history, sort_keys=True) + "\n")
    replace_dir(out_dir, write)


def load_models(path: str | Path) -> tuple[IndependenceModels, MaskUNet | None]:
    """The teacher (provider, discriminator, history) and the student (None if none was saved)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no independence-prior models (config.json); train them with "
                                f"freemask.masks.independence.train_independence and save_models")
    hint = stage_hint(path) or "re-make them with train_independence and save_models"
    config = read_json(path / "config.json", hint)
    try:
        shapes = {k: NetShape(**v) if v is not None else None for k, v in config.items()}
        builders = {"provider": MaskUNet, "discriminator": Discriminator, "student": MaskUNet}
        nets = {k: builders[k](s) if s is not None else None for k, s in shapes.items()}
    except (TypeError, KeyError, AttributeError, ValueError) as err:
        raise DataError(path / "config.json", f"not an independence-prior config ({reason(err)})", hint) from None
    for k, net in nets.items():
        if net is not None:
            net.load_state_dict(load_safetensors(path / f"{k}.safetensors", hint))
            net.eval()
    history = read_json(path / "history.json", hint) if (path / "history.json").is_file() else {}
    return IndependenceModels(nets["provider"], nets["discriminator"], history), nets.get("student")
