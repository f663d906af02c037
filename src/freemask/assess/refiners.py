"""The mask refiners against the masks they start from: PaintSeg (AMCP, ``freemask.masks.paintseg``)
and the Independence-Prior GAN (``freemask.masks.independence_boxes``), each applied to the
attention masks of the generate rule, and scored per class, as the attention masks are:

- on the generate stage's first ``refiners.per_class`` samples of every class (the stored images and
  masks), against the oracle segmenter's prediction;
- on ``refiners.renders_per_class`` noised renders of every class (attention recorded as the assess
  stage records it, the generate rule applied), against the truth; the refiners see the clean render.

Each method runs ``refiners.replicates`` times with its own seeds: a class's IoU is the mean over
the replicates and its sd the spread between them, beside the starting masks' IoU on the same
samples, so a row says whether the method improves on its starting masks by more than its spread.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from ..data.arrays import read_members
from ..diffusion.models import Generator
from ..generate.plan import sample_seed
from ..metrics.segmentation import mask_iou
from ..params import Params
from ..world.build import prompt
from ..world.spec import CLASSES, class_index
from ..masks.rules import masks_from_recorded
from .generator import noised_renders, record_noised_renders

METHODS = ("paintseg", "independence")
_STREAM = 41  # the refiners' seed stream (sample_seed(seed, stream, replicate, i))


class Subset:
    """Images, starting masks, reference masks, classes, prompts and backgrounds of one evaluation set."""

    def __init__(self, images: np.ndarray, start: np.ndarray, reference: np.ndarray, classes: list[str],
                 prompts: list[str], backgrounds: list[str]):
        n = len(images)
        if not (len(start) == len(reference) == len(classes) == len(prompts) == len(backgrounds) == n):
            raise ValueError("images, masks, classes, prompts and backgrounds must be one per sample")
        self.images, self.start, self.reference, self.classes = images, start, reference, classes
        self.prompts, self.backgrounds = prompts, backgrounds


def generated_subset(objects_dir, per_class: int | None, oracle) -> Subset:
    """The first ``per_class`` (None: all) stored samples of each class (the generate stage's order), their
    stored masks (ignored pixels counted as background) and the ``oracle``'s masks of their class."""
    from ..segmenters.mask2former import predict

    m = read_members([objects_dir], ("image.png", "label.png", "meta.json"))
    taken: dict[str, int] = {}
    idx = []
    for i, meta in enumerate(m["meta.json"]):
        c = meta["class"]
        if per_class is None or taken.get(c, 0) < per_class:
            taken[c] = taken.get(c, 0) + 1
            idx.append(i)
    short = [] if per_class is None else sorted(c for c in taken if taken[c] < per_class)
    if short:
        raise ValueError(f"refiners.per_class: {per_class} samples per class asked, the generate stage made fewer "
                         f"of {', '.join(short)} (generate.per_class)")
    images = np.stack([m["image.png"][i] for i in idx])
    labels = np.stack([m["label.png"][i] for i in idx])
    classes = [m["meta.json"][i]["class"] for i in idx]
    start = (labels > 0) & (labels != 255)
    reference = np.stack([o == class_index(c) for o, c in zip(predict(oracle, images), classes)])
    return Subset(images, start, reference, classes, [m["meta.json"][i]["prompt"] for i in idx],
                  [m["meta.json"][i]["background"] for i in idx])


def render_subset(gen: Generator, p: Params, n_per_class: int, size: int) -> Subset:
    """``n_per_class`` renders of each class on the backgrounds the world shows it on, their true
    masks, and the generate rule's masks of their attention when noised (``assess.noise_timesteps``,
    one UNet pass each)."""
    a, g = p.assess, p.generate
    images, truths, classes, prompts = noised_renders(n_per_class, a.seed, size, "world")
    start = []
    for sl, rec in record_noised_renders(gen, images, prompts, classes, a.noise_timesteps, a.seed,
                                         g.refine.resolution, g.batch_size, g.refine.self_attention_steps):
        masks = masks_from_recorded(rec, g, classes[sl])
        start.append(masks.foreground & ~masks.ignore)
    # the toy prompt ends "the {background}" (world.build.prompt)
    return Subset(images, np.concatenate(start), truths, classes, prompts, [q.rsplit(" the ", 1)[1] for q in prompts])


def ious(masks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.array([mask_iou(m, r) for m, r in zip(masks, reference)])


def refiner(method: str, p: Params, gen: Generator, pool: Subset | None = None
            ) -> Callable[[list[Subset], int], list[np.ndarray]]:
    """``refine(subsets, replicate) -> [bool masks of each subset]`` by ``method``, seeded by
    (``refiners.seed``, replicate). PaintSeg refines each image on its own. The Independence Prior
    learns from a dataset: one teacher and student per class trained on the crops of ``pool`` and
    of the subsets together, then read on each subset."""
    seed = p.refiners.seed
    if method == "paintseg":
        from ..masks.paintseg import features_from_params, painter_from_params, paintseg

        painter, features = painter_from_params(p.paintseg, gen), features_from_params(p.paintseg, gen)

        def refine(subsets: list[Subset], r: int) -> list[np.ndarray]:
            # the I-step paints the object away: prompted with the background alone (docs/paintseg.md)
            return [paintseg(s.images, s.start, painter, features, p.paintseg,
                             [sample_seed(seed, _STREAM, r, k, i) for i in range(len(s.images))], s.prompts,
                             progress=False, inpaint_prompts=[prompt([], b) for b in s.backgrounds])
                    for k, s in enumerate(subsets)]
        return refine
    if method == "independence":
        from ..masks.independence_boxes import learn_masks

        def refine(subsets: list[Subset], r: int) -> list[np.ndarray]:
            parts = ([pool] if pool is not None else []) + list(subsets)
            cfg = p.independence.model_copy(update={"seed": sample_seed(seed, _STREAM, r)})
            masks = learn_masks(np.concatenate([s.images for s in parts]), np.concatenate([s.start for s in parts]),
                                None, cfg, [c for s in parts for c in s.classes], progress=False)
            ends = np.cumsum([len(s.images) for s in parts])
            return [masks[e - len(s.images):e] for s, e in zip(parts, ends)][len(parts) - len(subsets):]
        return refine
    raise ValueError(f"refiners.methods: unknown method {method!r} (one of {', '.join(METHODS)})")


def _per_class(values: np.ndarray, classes: list[str]) -> dict[str, float]:
    arr = np.asarray(classes)
    return {c: float(values[arr == c].mean()) for c in CLASSES if (arr == c).any()}


def _spread(runs: list[dict[str, float]]) -> dict:
    """Per class mean and sd (ddof 1; 0 for one run) over replicate runs, and the class mean's."""
    out = {}
    for c in runs[0]:
        v = np.array([r[c] for r in runs])
        out[c] = {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)}
    means = np.array([np.mean(list(r.values())) for r in runs])
    return {"mean": round(float(means.mean()), 4), "sd": round(float(means.std(ddof=1)) if len(means) > 1 else 0.0, 4),
            "per_class": out}


def score_masks(subset: Subset, replicates: list[np.ndarray]) -> dict:
    """A method's masks of ``subset`` (one array per replicate) against its references, as
    :func:`_spread`, with the starting masks' IoU on the same samples and the per-class gain
    (method mean − start)."""
    start = _per_class(ious(subset.start, subset.reference), subset.classes)
    method = _spread([_per_class(ious(m, subset.reference), subset.classes) for m in replicates])
    gain = {c: round(method["per_class"][c]["mean"] - start[c], 4) for c in start}
    start_mean = float(np.mean(list(start.values())))
    return {"start": {"mean": round(start_mean, 4), "per_class": {c: round(v, 4) for c, v in start.items()}},
            "method": method, "gain": {"mean": round(method["mean"] - start_mean, 4), "per_class": gain}}


def refiners_table(p: Params, gen: Generator, generated: Subset, renders: Subset, pool: Subset | None = None) -> dict:
    """Every method of ``refiners.methods``, ``refiners.replicates`` times, scored on both subsets
    (:func:`score_masks`); ``pool``: the Independence Prior's extra training images."""
    cfg = p.refiners
    rows = {}
    for method in cfg.methods:
        refine = refiner(method, p, gen, pool)
        runs = [refine([generated, renders], r) for r in tqdm(range(cfg.replicates), desc=f"refiners: {method}")]
        rows[method] = {"vs_oracle_on_generated": score_masks(generated, [m[0] for m in runs]),
                        "vs_truth_on_noised_renders": score_masks(renders, [m[1] for m in runs])}
    return {"n_generated": len(generated.images), "n_noised_renders": len(renders.images),
            "n_pool": 0 if pool is None else len(pool.images), "replicates": cfg.replicates, "methods": rows}
