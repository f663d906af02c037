"""Application 2 of the Independence-Prior GAN: instance appearances and masks learned, without any
annotation, from one image of a dense homogeneous object cluster (the paper's DSF-HOC case).

The image is a toy-world render of ``independence.cluster_objects`` instances of one class packed
on one background (later instances occlude earlier ones). As in the paper:

- training data: windows of ``cluster_side`` pixels, about 1.5 times the instance width (the
  instances are rendered at that scale, so no resizing), with horizontal and vertical flips;
- background provider: the real patches with a black disk in the centre (radius 20/64 of the
  side, the paper's "roughly 20 pixels" at 64 px);
- foreground providers: ``cluster_layers`` layers from one shared generator
  (:class:`~.independence_nets.InstanceGenerator`), each with its own noise ``z``;
- layout: each RGBA layer zero-padded by ``cluster_pad`` and cropped back at a random offset
  (a uniform translation); composition by eq. 5 over the background layer;
- losses: eqs. 6-7 with the area penalty at ``cluster_area_target``, plus the appendix's
  information term "like InfoGAN" with weight ``cluster_info_weight`` (beta): a network Q
  (:class:`~.independence_nets.CodePredictor`) recovers each instance's ``z`` from its RGBA
  output, G and Q minimise ``beta * mean((Q(G(z)) - z)^2)`` (InfoGAN's Gaussian code term with
  unit variance, up to constants), which keeps G from ignoring ``z``.

:func:`cluster_demo` trains it, scores the learned masks against the renderer's true instance shape
(IoU at the best alignment) and writes a figure.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import label as connected
from scipy.signal import correlate2d
from tqdm import tqdm

from ..params import Independence
from ..world.render import PlacedObject, object_parts, render_scene
from .independence import _init, area_penalty, composite, d_loss, g_adv_loss, to_input
from .independence_nets import CodePredictor, Discriminator, GeneratorShape, InstanceGenerator, NetShape

_SIZE_JITTER = 0.1  # instance frame sides vary by +-10%


def instance_frame(cfg: Independence) -> float:
    """The instance's frame side as a fraction of the cluster image: its drawn width is 1/1.5 of the patch."""
    u0, u1, _, _ = _extent(cfg.cluster_class)
    return cfg.cluster_side / 1.5 / (u1 - u0) / cfg.cluster_resolution


def _extent(cls: str) -> tuple[float, float, float, float]:
    from ..world.placement import object_extent
    return object_extent(cls)


def render_cluster(cfg: Independence) -> tuple[np.ndarray, np.ndarray]:
    """The cluster image (R, R, 3) uint8 and its label map (R, R) uint8 (class id on objects)."""
    rng = np.random.default_rng([cfg.seed, 10])
    s = instance_frame(cfg)
    objs = [PlacedObject(cfg.cluster_class, float(x), float(y), float(s * (1 + rng.uniform(-_SIZE_JITTER, _SIZE_JITTER))))
            for x, y in rng.uniform(0, 1, (cfg.cluster_objects, 2))]
    img, lab = render_scene(rng, cfg.cluster_background, objs, cfg.cluster_resolution)
    return (img * 255).round().astype(np.uint8), lab


def true_instance(cfg: Independence) -> np.ndarray:
    """(S, S) bool: one instance of the mean size drawn at the centre of a patch."""
    side = cfg.cluster_side
    frame = instance_frame(cfg) * cfg.cluster_resolution / side
    mask = np.zeros((side, side), bool)
    for m, _ in object_parts(np.random.default_rng(0), PlacedObject(cfg.cluster_class, 0.5, 0.5, frame), side):
        mask |= m
    return mask


def cluster_patches(image: np.ndarray, cfg: Independence) -> np.ndarray:
    """(cluster_patches, S, S, 3) uint8 windows of the image at random places, flipped at random both ways."""
    rng = np.random.default_rng([cfg.seed, 11])
    side, r = cfg.cluster_side, image.shape[0]
    ys, xs = rng.integers(0, r - side + 1, (2, cfg.cluster_patches))
    out = []
    for y, x, fh, fv in zip(ys, xs, rng.random(cfg.cluster_patches) < 0.5, rng.random(cfg.cluster_patches) < 0.5):
        p = image[y:y + side, x:x + side]
        out.append(p[:, ::-1] if fh else p)
        out[-1] = out[-1][::-1] if fv else out[-1]
    return np.ascontiguousarray(np.stack(out))


def disk_backgrounds(patches: torch.Tensor) -> torch.Tensor:
    """The paper's background images: the real patches (B, 3, S, S) in [-1, 1] with a black disk of
    radius 20/64 of the side in the centre."""
    s = patches.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(s) + 0.5, torch.arange(s) + 0.5, indexing="ij")
    disk = (yy - s / 2) ** 2 + (xx - s / 2) ** 2 < (s * 20 / 64) ** 2
    return torch.where(disk, torch.full_like(patches, -1.0), patches)


def translate(layers: torch.Tensor, pad: int, rng: np.random.Generator) -> torch.Tensor:
    """(B, C, S, S) layers zero-padded by ``pad`` and cropped back at a uniform random offset each."""
    if pad == 0:
        return layers
    b, _, s, _ = layers.shape
    padded = torch.nn.functional.pad(layers, (pad,) * 4)
    oy, ox = (torch.from_numpy(rng.integers(0, 2 * pad + 1, b)) for _ in range(2))
    ys, xs = oy[:, None] + torch.arange(s), ox[:, None] + torch.arange(s)
    out = padded[torch.arange(b)[:, None, None], :, ys[:, :, None], xs[:, None, :]]  # (B, S, S, C)
    return out.permute(0, 3, 1, 2)


def train_cluster(patches: np.ndarray, cfg: Independence, progress: bool = True
                  ) -> tuple[InstanceGenerator, Discriminator, dict]:
    """Adversarial training of the shared instance generator on the cluster's patches."""
    side, n_layers = cfg.cluster_side, cfg.cluster_layers
    real_all = to_input(patches, side, "cluster patches")
    gshape = GeneratorShape(cfg.cluster_z_dim, side, cfg.width)
    gen = _init(cfg.seed + 5, lambda: InstanceGenerator(gshape))
    disc = _init(cfg.seed + 6, lambda: Discriminator(NetShape(side=side, width=cfg.d_width)))
    q = _init(cfg.seed + 7, lambda: CodePredictor(gshape))
    opt_g = torch.optim.Adam([*gen.parameters(), *q.parameters()], lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    rng = np.random.default_rng([cfg.seed, 12])
    zgen = torch.Generator().manual_seed(cfg.seed + 7)
    hist: dict[str, list[float]] = {"d": [], "g_adv": [], "area": [], "info": []}
    for _ in tqdm(range(cfg.cluster_steps), desc="independence cluster GAN", disable=not progress):
        b = min(cfg.batch_size, len(real_all))
        real = real_all[torch.from_numpy(rng.integers(0, len(real_all), b))]
        back = disk_backgrounds(real_all[torch.from_numpy(rng.integers(0, len(real_all), b))])
        z = torch.randn(b * n_layers, cfg.cluster_z_dim, generator=zgen)
        rgba = gen(z)
        placed = translate(rgba, cfg.cluster_pad, rng).view(b, n_layers, 4, side, side)
        fake = composite([back] + [placed[:, i, :3] * 2 - 1 for i in range(n_layers)],
                         [torch.ones_like(back[:, :1])] + [placed[:, i, 3:] for i in range(n_layers)])
        loss_d = d_loss(disc(real), disc(fake.detach()))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        adv, area = g_adv_loss(disc(fake)), area_penalty(rgba[:, 3], cfg.cluster_area_target)
        info = ((q(rgba) - z) ** 2).mean()
        opt_g.zero_grad()
        (adv + cfg.area_weight * area + cfg.cluster_info_weight * info).backward()
        opt_g.step()
        for k, v in (("d", loss_d), ("g_adv", adv), ("area", area), ("info", info)):
            hist[k].append(float(v.detach()))
    return gen.eval(), disc.eval(), hist


def best_shift_iou(masks: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) IoU of each (N, S, S) bool mask with ``truth`` at the translation that fits it best."""
    t = truth.astype(np.float64)
    out = []
    for m in masks.astype(np.float64):
        inter = correlate2d(m, t, mode="full")
        out.append(float((inter / np.maximum(m.sum() + t.sum() - inter, 1e-9)).max()) if m.any() else 0.0)
    return np.array(out)


def sample_instances(gen: InstanceGenerator, n: int, seed: int) -> np.ndarray:
    """(n, S, S, 4) float32 RGBA in [0, 1] from noise drawn with ``seed``."""
    with torch.no_grad():
        z = torch.randn(n, gen.shape.z_dim, generator=torch.Generator().manual_seed(seed))
        return gen(z).permute(0, 2, 3, 1).numpy()


def cluster_demo(cfg: Independence, out_png: str | None = None, progress: bool = True) -> dict:
    """Render the cluster, train on its patches, score 64 sampled instance masks (> threshold)
    against the true instance shape, and write the figure to ``out_png`` (if given). Returns the metrics."""
    image, labels = render_cluster(cfg)
    patches = cluster_patches(image, cfg)
    gen, _, hist = train_cluster(patches, cfg, progress)
    inst = sample_instances(gen, 64, cfg.seed + 8)
    masks = inst[..., 3] > cfg.threshold
    truth = true_instance(cfg)
    ious = best_shift_iou(masks, truth)
    components = [int(connected(m)[1]) for m in masks]
    metrics = {"mask_iou_vs_true_instance": round(float(ious.mean()), 4),
               "share_iou_above_0.5": round(float((ious > 0.5).mean()), 4),
               "share_one_component": round(float(np.mean([c == 1 for c in components])), 4),
               "mask_area_share": round(float(masks.mean()), 4), "true_area_share": round(float(truth.mean()), 4),
               "object_share_of_image": round(float((labels > 0).mean()), 4),
               "d_loss_last": round(float(np.mean(hist["d"][-50:])), 4),
               "area_last": round(float(np.mean(hist["area"][-50:])), 6),
               "info_last": round(float(np.mean(hist["info"][-50:])), 4),
               "appearance_sd_across_z": round(float(inst[..., :3].std(0).mean()), 4)}
    if out_png is not None:
        write_figure(out_png, image, patches, gen, inst, truth, cfg)
    return metrics


def write_figure(out_png: str, image: np.ndarray, patches: np.ndarray, gen: InstanceGenerator, inst: np.ndarray,
                 truth: np.ndarray, cfg: Independence, n: int = 8) -> None:
    """A PNG: the cluster image; rows of real patches, composites, learned appearances (RGB), masks
    (A), carved instances (RGB x A) and the true instance mask."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import write_with

    rng = np.random.default_rng([cfg.seed, 13])
    real = torch.from_numpy(patches[:n]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        z = torch.randn(n * cfg.cluster_layers, cfg.cluster_z_dim, generator=torch.Generator().manual_seed(cfg.seed + 9))
        placed = translate(gen(z), cfg.cluster_pad, rng).view(n, cfg.cluster_layers, 4, cfg.cluster_side, cfg.cluster_side)
        back = (disk_backgrounds(real * 2 - 1) + 1) / 2
        comp = composite([back] + [placed[:, i, :3] for i in range(cfg.cluster_layers)],
                         [torch.ones_like(back[:, :1])] + [placed[:, i, 3:] for i in range(cfg.cluster_layers)])
    rows = [("real patches", patches[:n] / 255), ("composites", comp.permute(0, 2, 3, 1).numpy()),
            ("appearances", inst[:n, ..., :3]), ("masks", inst[:n, ..., 3]),
            ("carved", inst[:n, ..., :3] * inst[:n, ..., 3:]), ("true instance", [truth] + [None] * (n - 1))]
    fig = plt.figure(figsize=(n * 1.1 + 3.5, len(rows) * 1.1))
    ax = fig.add_axes([0.0, 0.05, 3.2 / (n * 1.1 + 3.5), 0.9])
    ax.imshow(image), ax.set_title("cluster image", fontsize=8), ax.axis("off")
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            a = fig.add_subplot(len(rows), n + 3, r * (n + 3) + c + 4)
            a.axis("off")
            if imgs[c] is not None:
                a.imshow(np.clip(imgs[c], 0, 1), cmap="gray" if np.ndim(imgs[c]) == 2 else None, vmin=0, vmax=1)
            if c == 0:
                a.set_title(name, fontsize=7, loc="left")
    write_with(out_png, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)
