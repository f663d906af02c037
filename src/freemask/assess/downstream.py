"""Downstream of the refiners: the synthetic-only val mIoU when PaintSeg's or the Independence
Prior's masks replace the attention masks of every generated object (the ``downstream`` stages of
extras/dvc.yaml)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..diffusion.models import Generator
from ..params import Params
from ..world.spec import class_index
from .refiners import Subset, refiner


def refine_objects(method: str, p: Params, gen: Generator, objects_dir, out_dir) -> dict:
    """Every generated object of ``objects_dir`` with its mask replaced by ``method``'s refinement of
    its attention mask (replicate 0 of ``refiners.seed``), written as the generate stage writes its
    objects (one shard per source shard, same keys, members and order); the class ids stay the
    toy world's. Returns the share of object pixels the refinement kept and added."""
    from ..data.shards import read_shard, shard_paths, write_shard

    paths = shard_paths(objects_dir)
    samples = [(i, key, m) for i, path in enumerate(paths) for key, m in read_shard(path)]
    images = np.stack([m["image.png"] for _, _, m in samples])
    labels = np.stack([m["label.png"] for _, _, m in samples])
    classes = [m["meta.json"]["class"] for _, _, m in samples]
    start = (labels > 0) & (labels != 255)
    refined = refiner(method, p, gen)(
        [Subset(images, start, start, classes, [m["meta.json"]["prompt"] for _, _, m in samples],
                [m["meta.json"]["background"] for _, _, m in samples])], 0)[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(tqdm(paths, desc=f"{method}: writing shards")):
        write_shard(out / path.name, (
            (key, {**{k: m[k] for k in m}, "label.png": np.where(refined[j], class_index(classes[j]), 0).astype(np.uint8)})
            for j, (s, key, m) in enumerate(samples) if s == i))
    kept = float((refined & start).sum() / max(start.sum(), 1))
    added = float((refined & ~start).sum() / max(start.sum(), 1))
    return {"objects": len(samples), "kept_share_of_attention_pixels": round(kept, 4),
            "added_share_of_attention_pixels": round(added, 4)}


def downstream(method: str, p: Params, gen: Generator, out_dir, model_dir, work_dir, attention_model_dir) -> dict:
    """Synthetic-only mIoU when ``method``'s masks train the segmenter: the generated objects'
    masks refined (:func:`refine_objects`, into ``out_dir``/objects), scenes composed from them as
    the compose stage does (``out_dir``/composed), a segmenter trained on both as train_synthetic
    trains (into ``model_dir``; checkpoints in ``work_dir``) and scored on the profile's val split
    beside the segmenter trained on the attention masks (``attention_model_dir``)."""
    from ..compose.dataset import compose_from_params
    from ..data.arrays import from_shards
    from ..data.profile import real_split
    from ..data.voc import as_stored
    from ..labels import from_profile
    from ..metrics.evaluation import evaluate_predictions
    from ..segmenters.mask2former import load_segmenter, predict, train_segmenter

    out = Path(out_dir)
    refined = refine_objects(method, p, gen, "data/generated/objects", out / "objects")
    composed = compose_from_params(p, out / "objects", "data/generated/scenes", out / "composed",
                                   "data/thesaurus/thesaurus.csv", "models/placement", "models/harmonizer")
    names = list(from_profile(p.profile).names)
    images, labels = from_shards(out / "objects", out / "composed", class_names=tuple(names))
    if p.train.synthetic_jpeg_quality is not None:
        images = as_stored(images, p.train.synthetic_jpeg_quality)
    stats = train_segmenter(p.train, images, labels, len(names), model_dir, class_names=names, work_dir=work_dir)
    val_images, val_labels = real_split(p, p.data.val_split)
    scored = {w: evaluate_predictions(predict(load_segmenter(d), val_images, p.evaluate.batch_size), val_labels, names)
              for w, d in ((method, model_dir), ("attention", attention_model_dir))}
    return {"method": method, "refined": refined, "composed_images": composed["images"],
            "val_mIoU": scored[method]["mIoU"], "attention_val_mIoU": scored["attention"]["mIoU"],
            "gain": round(scored[method]["mIoU"] - scored["attention"]["mIoU"], 4),
            "per_class": {w: s["per_class"] for w, s in scored.items()}, "best_heldout_mIoU": stats["best_heldout_mIoU"]}
