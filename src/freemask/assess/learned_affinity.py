"""The toy pipeline's learned affinity network: trained on the generated objects and their own
attention maps (the train_affinity stage), read by the assess stage's mask-quality table."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.shards import read_members
from ..masks.affinity_net import AffinityNet, NetShape, TrainSettings, train_affinity_net
from ..params import AffinityNetParams


def object_images_and_maps(objects_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The generate stage's object images (B, H, W, 3) uint8 and the normalised attention maps its
    threshold rule read (B, H, W) float32 in [0, 1], in shard order."""
    m = read_members([objects_dir], ("image.png", "attention.png"))
    return np.stack(m["image.png"]), np.stack(m["attention.png"]).astype(np.float32) / 255.0


def train_on_objects(objects_dir: str | Path, cfg: AffinityNetParams, progress: bool = True
                     ) -> tuple[AffinityNet, dict]:
    """The affinity net of ``cfg`` trained on ``objects_dir``; and its training summary (the share of
    confident pixels its labels came from, the loss at the start and the end)."""
    images, maps = object_images_and_maps(objects_dir)
    net, losses = train_affinity_net(
        images, maps, NetShape(features=cfg.features, width=cfg.width, radius=cfg.radius),
        TrainSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, fg=cfg.fg, bg=cfg.bg, seed=cfg.seed),
        progress=progress)
    k = max(1, min(20, len(losses) // 5))
    return net, {"images": int(len(images)),
                 "confident_object_share": round(float((maps >= cfg.fg).mean()), 4),
                 "confident_background_share": round(float((maps <= cfg.bg).mean()), 4),
                 "loss_first_steps": round(float(np.mean(losses[:k])), 4),
                 "loss_last_steps": round(float(np.mean(losses[-k:])), 4)}
