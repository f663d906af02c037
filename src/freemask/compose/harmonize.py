"""Harmonization of pasted objects (paper §3.2): make an object pasted from one image look lit like
the scene it joins. Methods (``compose.harmonize``):

- ``statistics``: colour-statistics matching of the light (:func:`statistics`): the object's
  per-channel RGB gain is set from the mean log colour of the background around it, in the scene
  and in the image it was cut out of, each compared with reference statistics of its background
  kind (:class:`LightReference`, fitted by :func:`fit_light` on generated single-object images);
- ``rain``: the RAIN-style network of :mod:`freemask.compose.rain`, trained on toy pairs
  (:func:`train_harmonizer`) or loaded from a checkpoint folder (:func:`load_harmonizer`);
- ``none``: the composite unchanged (the ablation).

Every method changes only the pixels inside the mask. Why the default and what each measures:
docs/harmonization.md.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..params import Harmonize
from ..world.relight import relit_pair
from ..world.spec import BACKGROUNDS, CLASSES
from .colour import rgb_to_lab, to_uint8
from .rain import NetShape, RainNet, TrainSettings, apply_rain, load_harmonizer, save_harmonizer, train_rain

METHODS = ("statistics", "rain", "none")
__all__ = ["METHODS", "LightReference", "fit_light", "harmonize", "statistics", "load_harmonizer", "train_harmonizer",
           "relit_pairs", "delta_e"]

# seeds of the toy pairs: [seed, kind, index]; the kinds keep training, validation and the
# benchmark's pairs apart
KIND_TRAIN, KIND_VAL, KIND_BENCHMARK, KIND_REFERENCE = 1, 2, 3, 4


def ring_mask(mask: np.ndarray, ring: float) -> np.ndarray:
    """The background pixels the object is compared with: outside ``mask`` and within
    ``ring`` x the object's bounding-box side (chessboard distance, at least 1 px) of it; ``ring``
    0 = every pixel outside the mask."""
    if ring == 0:
        return ~mask
    ys, xs = np.nonzero(mask)
    width = max(1, int(np.ceil(ring * max(np.ptp(ys) + 1, np.ptp(xs) + 1))))
    return (ndimage.distance_transform_cdt(~mask, metric="chessboard") <= width) & ~mask


def log_rgb(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> float64 natural log of the colour in [1/255, 1] (a black channel counts as 1/255)."""
    return np.log(np.maximum(pixels.astype(np.float64), 1.0) / 255.0)


def surround(image: np.ndarray, mask: np.ndarray, ring: float, exclude: np.ndarray | None = None
             ) -> np.ndarray | None:
    """The mean log colour (:func:`log_rgb`) of the background around the object in ``mask``: its
    :func:`ring_mask`, less ``exclude``; None when the mask is empty or nothing surrounds it."""
    if not mask.any():
        return None
    bg = ring_mask(mask, ring)
    if exclude is not None:
        bg &= ~exclude
    return log_rgb(image[bg]).mean(0) if bg.any() else None


@dataclass(frozen=True)
class LightReference:
    """Per background kind: ``surround``, the mean log colour of the background around its objects,
    and ``light``, the log RGB gain of its lighting (mean over the kinds: 0)."""

    surround: dict[str, np.ndarray]
    light: dict[str, np.ndarray]

    def level(self, kind: str, around: np.ndarray) -> np.ndarray:
        """The log gain of the light an object is under, from the mean log colour ``around`` it in an
        image of background ``kind``: the kind's light plus how far the image departs from the kind."""
        if kind not in self.light:
            raise KeyError(f"harmonize=statistics: no reference for background {kind!r} (known: {sorted(self.light)})")
        return self.light[kind] + around - self.surround[kind]


def fit_light(samples: Iterable[tuple[str, str, np.ndarray, np.ndarray]]) -> LightReference:
    """The :class:`LightReference` of single-object images, each given as (class, background kind,
    mean log colour of the object, of its surround). An object's log colour is modelled as its class's
    plus its background kind's light, fitted by least squares over the (class, kind) means; a kind's
    light is known only relative to kinds that share a class with it, so every kind must be linked
    to every other through shared classes (else ValueError naming them)."""
    objects: dict[tuple[str, str], list[np.ndarray]] = {}
    around: dict[str, list[np.ndarray]] = {}
    for cls, kind, obj, sur in samples:
        objects.setdefault((cls, kind), []).append(obj)
        around.setdefault(kind, []).append(sur)
    if not objects:
        raise ValueError("harmonize=statistics: no single-object image to fit the light reference on")
    classes, kinds = sorted({c for c, _ in objects}), sorted(around)
    parent = {k: k for k in kinds}  # kinds linked through a shared class (union-find)
    root = lambda k: k if parent[k] == k else root(parent[k])  # noqa: E731
    for c in classes:
        linked = [k for k in kinds if (c, k) in objects]
        for k in linked[1:]:
            parent[root(k)] = root(linked[0])
    groups = sorted({tuple(k for k in kinds if root(k) == r) for r in map(root, kinds)})
    if len(groups) > 1:
        raise ValueError("harmonize=statistics: the backgrounds " + " | ".join(", ".join(g) for g in groups)
                         + " share no generated class, so their lights cannot be compared")
    cells = sorted(objects)
    design = np.zeros((len(cells) + 1, len(classes) + len(kinds)))
    target = np.zeros((len(cells) + 1, 3))
    for row, (c, k) in enumerate(cells):
        design[row, classes.index(c)] = design[row, len(classes) + kinds.index(k)] = 1
        target[row] = np.mean(objects[(c, k)], 0)
    design[-1, len(classes):] = 1  # the lights sum to 0
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    return LightReference({k: np.mean(around[k], 0) for k in kinds},
                          {k: solution[len(classes) + j] for j, k in enumerate(kinds)})


def statistics(image: np.ndarray, mask: np.ndarray, ref: LightReference, source: tuple[str, np.ndarray],
               target: str, ring: float = 0.25, strength: float = 1.0) -> np.ndarray:
    """(H, W, 3) uint8 image with the object in (H, W) bool ``mask`` relit for the scene: its RGB
    channels multiplied by ``exp(strength * (ref.level(target, around) - ref.level(*source)))``,
    ``around`` being the mean log colour of its :func:`ring_mask` in ``image`` (a scene of background
    ``target``) and ``source`` the (background kind, mean log colour around it) of the image it was cut
    out of. Pixels outside the mask are returned bit for bit; an empty mask or one with no background
    around it leaves the image unchanged."""
    _check(image, mask)
    if not 0 <= strength <= 1:
        raise ValueError(f"harmonize.strength must be in [0, 1], got {strength}")
    out = image.copy()
    here = surround(image, mask, ring)
    if here is None:
        return out
    gain = np.exp(strength * (ref.level(target, here) - ref.level(*source)))
    out[mask] = to_uint8(np.clip(image[mask].astype(np.float64) / 255.0 * gain, 0.0, 1.0))
    return out


def harmonize(image: np.ndarray, mask: np.ndarray, method: str, net: RainNet | None = None,
              ref: LightReference | None = None, source: tuple[str, np.ndarray] | None = None,
              target: str | None = None, ring: float = 0.25, strength: float = 1.0) -> np.ndarray:
    """The (H, W, 3) uint8 ``image`` with the object in (H, W) bool ``mask`` harmonized by ``method``:
    ``statistics`` with ``ref``, ``source``, ``target``, ``ring`` and ``strength`` (:func:`statistics`),
    ``rain`` with ``net``, or ``none``."""
    _check(image, mask)
    if method == "none":
        return image.copy()
    if method == "statistics":
        if ref is None or source is None or target is None:
            raise ValueError("compose.harmonize=statistics needs a light reference (fit_light), the object's source "
                             "(background, surround) and the scene's background")
        return statistics(image, mask, ref, source, target, ring, strength)
    if method == "rain":
        if net is None:
            raise ValueError("compose.harmonize=rain needs a network: load one with load_harmonizer(folder)")
        return apply_rain(net, image[None], mask[None])[0]
    raise KeyError(f"compose.harmonize must be one of {', '.join(METHODS)}, got {method!r}")


def _check(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2] or mask.dtype != bool:
        raise ValueError(f"mask must be (H, W) bool of the image's size {image.shape[:2]}, got {mask.shape} {mask.dtype}")


def relit_pairs(seed: int, kind: int, n: int, resolution: int, balanced: bool = False, with_source: bool = False
                ) -> tuple[np.ndarray, ...]:
    """``n`` toy pairs (:func:`freemask.world.relight.relit_pair`) as uint8 composites, uint8 targets,
    bool masks and their (class, source background, target background), with ``with_source`` the uint8
    source images last. The i-th pair's seed is ``[seed, kind, i]``; its combination is drawn from
    that seed, or with ``balanced`` the i-th of every (class, source, target) in turn."""
    combos = list(itertools.product(CLASSES, BACKGROUNDS, BACKGROUNDS))
    comps, targets, masks, what, sources = [], [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, kind, i])
        combo = combos[i % len(combos)] if balanced else combos[int(rng.integers(len(combos)))]
        comp, target, mask, *source = relit_pair(rng, *combo, resolution, with_source=with_source)
        comps.append(to_uint8(comp)), targets.append(to_uint8(target)), masks.append(mask), what.append(combo)
        sources += [to_uint8(s) for s in source]
    out = np.stack(comps), np.stack(targets), np.stack(masks), what
    return (*out, np.stack(sources)) if with_source else out


def reference_from_renders(seed: int, n: int, resolution: int, ring: float) -> LightReference:
    """The :class:`LightReference` fitted on ``n`` correctly lit toy renders of one object (the targets of
    :func:`relit_pairs` of kind ``KIND_REFERENCE``): what the generator's own images give in
    ``compose``, with the renderer's ground-truth masks."""
    _, targets, masks, what = relit_pairs(seed, KIND_REFERENCE, n, resolution)
    return fit_light((cls, kind, log_rgb(t[m]).mean(0), surround(t, m, ring)) for t, m, (cls, _, kind)
                     in zip(targets, masks, what))


def delta_e(images: np.ndarray, targets: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the mean CIE76 colour difference (Euclidean distance in Lab) to the target over the
    masked pixels."""
    d = np.linalg.norm(rgb_to_lab(images) - rgb_to_lab(targets), axis=-1)
    return (d * masks).sum((1, 2)) / np.maximum(masks.sum((1, 2)), 1)


def train_harmonizer(cfg: Harmonize, out_dir: str | Path, resolution: int = 32, progress: bool = True) -> dict:
    """Train the RAIN network of ``cfg`` on ``cfg.train_pairs`` toy pairs at ``resolution``, save it to
    ``out_dir``; returns the mean colour error (:func:`delta_e`) on ``cfg.val_pairs`` held-out pairs
    without harmonization and with the net, and the loss at the start and the end."""
    comps, targets, masks, _ = relit_pairs(cfg.seed, KIND_TRAIN, cfg.train_pairs, resolution)
    net, losses = train_rain(comps, targets, masks, NetShape(width=cfg.width),
                             TrainSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed),
                             progress=progress)
    save_harmonizer(net, out_dir)
    vc, vt, vm, _ = relit_pairs(cfg.seed, KIND_VAL, cfg.val_pairs, resolution, balanced=True)
    none, rain = float(delta_e(vc, vt, vm).mean()), float(delta_e(apply_rain(net, vc, vm), vt, vm).mean())
    k = max(1, min(50, len(losses) // 5))
    return {"val_delta_e_none": round(none, 3), "val_delta_e_rain": round(rain, 3),
            "val_ratio_rain_to_none": round(rain / none, 4),
            "loss_first_steps": round(float(np.mean(losses[:k])), 5),
            "loss_last_steps": round(float(np.mean(losses[-k:])), 5)}
