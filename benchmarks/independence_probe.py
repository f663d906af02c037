"""Probe: masks of the Independence-Prior GAN (teacher and distilled student) against the attention
masks, both scored by IoU with the oracle segmenter's predictions (``models/segmenter_real``), on
the generated single-object images of ``data/generated/objects``; and seconds per step.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/independence_probe.py \
        --classes ball car --out benchmarks/results/independence_<date>.json [--set steps=300 ...]

Backgrounds: ``--backgrounds images`` (patches of the generated images beside their attention masks,
the default of ``learn_masks``) or ``renders`` (background-only renders of the world, the class's
backgrounds, lighting applied; a ground-truth-free but world-side source).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from freemask.data.arrays import read_members
from freemask.masks.independence_boxes import learn_soft_masks
from freemask.params import load
from freemask.segmenters.mask2former import load_segmenter, predict
from freemask.world.render import apply_lighting, render_background
from freemask.world.spec import BACKGROUNDS, class_index


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, union = np.logical_and(a, b).sum(), np.logical_or(a, b).sum()
    return float(inter / union) if union else 1.0


def renders(n: int, seed: int, r: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = [apply_lighting(render_background(rng, BACKGROUNDS[i % len(BACKGROUNDS)], r), BACKGROUNDS[i % len(BACKGROUNDS)], rng)
           for i in range(n)]
    return (np.stack(out) * 255).round().astype(np.uint8)


def box_masks(masks: np.ndarray) -> np.ndarray:
    """The filled bounding box of each mask: the trivial mask a box annotation gives."""
    out = np.zeros_like(masks)
    for o, m in zip(out, masks):
        ys, xs = np.nonzero(m)
        if len(ys):
            o[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", default="/work/main/data/generated/objects")
    ap.add_argument("--oracle", default="/work/main/models/segmenter_real")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--classes", nargs="*", default=None, help="default: every class")
    ap.add_argument("--backgrounds", choices=("images", "renders"), default="images")
    ap.add_argument("--set", nargs="*", default=[], help="independence.KEY=VALUE overrides")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--figure", type=Path, default=None, help="a PNG of examples: image, attention, teacher, student, oracle")
    a = ap.parse_args()
    cfg = load(a.params).independence
    for kv in a.set:
        k, v = kv.split("=", 1)
        cfg = cfg.model_copy(update={k: type(getattr(cfg, k))(v) if not isinstance(getattr(cfg, k), bool) else v == "true"})
    torch.set_num_threads(cfg.threads)
    m = read_members([a.objects], ("image.png", "label.png", "meta.json"))
    classes = [x["class"] for x in m["meta.json"]]
    keep = [i for i, c in enumerate(classes) if a.classes is None or c in a.classes]
    images = np.stack([m["image.png"][i] for i in keep])
    attention = np.stack([m["label.png"][i] for i in keep]) > 0
    classes = [classes[i] for i in keep]
    oracle_maps = predict(load_segmenter(a.oracle), images)
    oracle = np.stack([o == class_index(c) for o, c in zip(oracle_maps, classes)])
    bgs = None if a.backgrounds == "images" else renders(200, 7, images.shape[1])
    t0 = time.perf_counter()
    soft = learn_soft_masks(images, attention, bgs, cfg, classes, progress=True)
    seconds = time.perf_counter() - t0
    groups = len(set(classes)) if cfg.per_class else 1
    steps = groups * (cfg.steps + cfg.distill_steps)
    boxes = box_masks(attention)
    rows = {}
    for c in sorted(set(classes)) + ["all"]:
        idx = [i for i, k in enumerate(classes) if c in ("all", k)]
        rows[c] = {name: round(float(np.mean([iou(mk[i], oracle[i]) for i in idx])), 4)
                   for name, mk in (("attention", attention), ("teacher", soft["teacher"] > cfg.threshold),
                                    ("student", soft["student"] > cfg.threshold), ("attention_box", boxes))}
        rows[c]["n"] = len(idx)
        rows[c]["area_attention"] = round(float(attention[idx].mean()), 4)
        rows[c]["area_student"] = round(float((soft["student"][idx] > cfg.threshold).mean()), 4)
        rows[c]["area_oracle"] = round(float(oracle[idx].mean()), 4)
    out = {"params": cfg.model_dump(), "backgrounds": a.backgrounds, "iou_vs_oracle": rows,
           "seconds_total": round(seconds, 1), "updates": steps,
           "seconds_per_step_incl_distill": round(seconds / steps, 4), "torch_threads": torch.get_num_threads()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out["iou_vs_oracle"], indent=1), seconds)
    if a.figure is not None:
        figure(a.figure, images, [attention, soft["teacher"], soft["student"], oracle], classes)


def figure(path: Path, images: np.ndarray, maps: list[np.ndarray], classes: list[str], per_class: int = 4) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pick = [i for c in sorted(set(classes)) for i in [j for j, k in enumerate(classes) if k == c][:per_class]]
    names = ["image", "attention", "teacher", "student", "oracle"]
    fig, axes = plt.subplots(len(names), len(pick), figsize=(len(pick) * 0.9, len(names) * 0.95), squeeze=False)
    for c, i in enumerate(pick):
        for r, im in enumerate([images[i]] + [m[i] for m in maps]):
            axes[r, c].imshow(im, cmap="gray", vmin=0, vmax=1) if im.ndim == 2 else axes[r, c].imshow(im)
            axes[r, c].axis("off")
        axes[0, c].set_title(classes[i], fontsize=6)
    for r, n in enumerate(names):
        axes[r, 0].text(-2, 16, n, fontsize=6, ha="right", va="center")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
