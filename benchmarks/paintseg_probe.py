"""Probe: does PaintSeg's AMCP (``freemask.masks.paintseg``) improve masks on the toy world?

Two sets, ``--per-class`` images of each class:

1. ``generated``: the generate stage's single-object samples (``--objects``), their attention masks
   (label > 0) as the coarse-mask prompt, scored against the oracle segmenter's prediction of the
   sample's class (``--oracle``): IoU before and after AMCP;
2. ``renders``: toy renders with exact truth (``assess.generator.noised_renders``), prompted by
   a corrupted mask -- the truth's bounding box grown by 3 px (``box``), the truth shifted by
   (3, 2) px and dilated by 1 (``shifted``) -- and the true mask itself (``truth``, to see what
   AMCP does to a perfect prompt): IoU with the truth before and after.

Seconds per image of AMCP (one thread) are printed for each feature extractor. Prints a JSON
summary, and writes it with ``--out``. Settings: the ``paintseg`` params (``--params``) with the
command-line overrides. Run (one thread, a few minutes):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/paintseg_probe.py --per-class 5 \\
        --features colour affinity unet --out benchmarks/results/paintseg_probe.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from freemask.assess.generator import noised_renders
from freemask.data.arrays import read_members
from freemask.diffusion.models import load_generator
from freemask.io import write_json
from freemask.masks.paintseg import features_from_params, paintseg, painter_from_params
from freemask.params import load
from freemask.world.build import prompt
from freemask.world.spec import CLASSES


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = (a & b).sum((1, 2))
    union = (a | b).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def background_prompt(object_prompt: str) -> str:
    """The toy prompt of the background alone: 'a photo of a car on the road' -> 'a photo of the road'."""
    return prompt([], object_prompt.split()[-1])


def generated_set(objects: Path, oracle: Path, per_class: int):
    from freemask.segmenters.mask2former import load_segmenter, predict

    m = read_members([objects], ("image.png", "label.png", "meta.json"))
    picked, count = [], {c: 0 for c in CLASSES}
    for i, meta in enumerate(m["meta.json"]):
        if count[meta["class"]] < per_class:
            count[meta["class"]] += 1
            picked.append(i)
    images = np.stack([m["image.png"][i] for i in picked])
    labels = np.stack([m["label.png"][i] for i in picked])
    metas = [m["meta.json"][i] for i in picked]
    ids = np.array([CLASSES.index(x["class"]) + 1 for x in metas])
    pred = predict(load_segmenter(oracle), images)
    reference = pred == ids[:, None, None]
    attention = (labels > 0) & (labels != 255)
    return images, {"attention": attention}, reference, [x["prompt"] for x in metas], [x["class"] for x in metas]


def render_set(per_class: int, seed: int):
    images, truth, classes, prompts = noised_renders(per_class, seed, 32)
    boxes = []
    for t in truth:
        ys, xs = np.nonzero(t)
        b = np.zeros_like(t)
        b[max(ys.min() - 3, 0):ys.max() + 4, max(xs.min() - 3, 0):xs.max() + 4] = True
        boxes.append(b)
    shifted = np.stack([ndimage.binary_dilation(np.roll(t, (2, 3), axis=(0, 1))) for t in truth])
    return images, {"box": np.stack(boxes), "shifted": shifted, "truth": truth.copy()}, truth, prompts, classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--objects", type=Path, default=Path("data/generated/objects"))
    ap.add_argument("--oracle", type=Path, default=Path("models/segmenter_real"))
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--features", nargs="+", default=["colour"])
    ap.add_argument("--sets", nargs="+", default=["generated", "renders"])
    ap.add_argument("--kinds", nargs="+", default=["attention", "box", "shifted", "truth"],
                    help="which initial masks to refine")
    ap.add_argument("--inpaint-prompt", choices=["object", "background"], default="object",
                    help="the I-step's prompt: the object's, or the background alone ('a photo of the grass')")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="paintseg param overrides (YAML values)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import yaml

    torch.set_num_threads(1)
    base = load(args.params).paintseg
    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    sets = {}
    if "generated" in args.sets:
        sets["generated"] = generated_set(args.objects, args.oracle, args.per_class)
    if "renders" in args.sets:
        sets["renders"] = render_set(args.per_class, seed=1)
    gen = load_generator(base.generator)
    summary = {"settings": {**base.model_dump(), **overrides}, "inpaint_prompt": args.inpaint_prompt,
               "per_class": args.per_class, "results": {}}
    for name in args.features:
        cfg = base.model_copy(update={**overrides, "features": name})
        painter, features = painter_from_params(cfg, gen), features_from_params(cfg, gen)
        res, seconds, n_images = {}, 0.0, 0
        for set_name, (images, prompts_masks, reference, prompts, classes) in sets.items():
            seeds = list(range(len(images)))
            for kind, initial in prompts_masks.items():
                if kind not in args.kinds:
                    continue
                t0 = time.perf_counter()
                inpaint = None if args.inpaint_prompt == "object" else [background_prompt(p) for p in prompts]
                refined = paintseg(images, initial, painter, features, cfg, seeds, prompts, inpaint, progress=False)
                seconds += time.perf_counter() - t0
                n_images += len(images)
                before, after = iou(initial, reference), iou(refined, reference)
                per_class = {c: [round(float(before[np.array(classes) == c].mean()), 3),
                                 round(float(after[np.array(classes) == c].mean()), 3)] for c in CLASSES}
                res[f"{set_name}/{kind}"] = {"before": round(float(before.mean()), 3),
                                             "after": round(float(after.mean()), 3),
                                             "improved_share": round(float((after > before).mean()), 3),
                                             "per_class_before_after": per_class}
                print(f"{name:9s} {set_name}/{kind:10s} IoU {before.mean():.3f} -> {after.mean():.3f} "
                      f"(improved {np.mean(after > before):.0%})", flush=True)
        res["seconds_per_image"] = round(seconds / n_images, 3)
        print(f"{name:9s} {seconds / n_images:.3f} s per image", flush=True)
        summary["results"][name] = res
    if args.out:
        write_json(args.out, summary)
    print(json.dumps({k: {s: (v[s]["before"], v[s]["after"]) if isinstance(v[s], dict) else v[s] for s in v}
                      for k, v in summary["results"].items()}, indent=1))


if __name__ == "__main__":
    main()
