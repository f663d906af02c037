"""PaintSeg (Li et al., 2023): training-free mask refinement by adversarial masked contrastive
painting (AMCP).

Each iteration paints the current mask ``M`` twice over, ``n_paintings`` times each:

- the I-step inpaints the object region (``keep = ~M``): an object pixel inside ``M`` is painted
  over with background, so its features change a lot; a background pixel inside ``M`` is painted
  back as background and changes little;
- the O-step outpaints everything outside the mask (``keep = M``): the background outside is
  re-invented and changes, an object part cut off by ``M`` is continued from the kept part.

With ``F`` the features of the image, ``P_I`` / ``P_O`` the mean features of the I- / O-step
paintings, the contrastive potential of a pixel is ``phi = |F - P_I| - |F - P_O|``: how much
more the pixel changed when the object was removed than when the object was kept. Kept pixels
do not change, so ``phi`` is the I-step change inside ``M`` and minus the O-step change outside.
The new mask is the high cluster of an exact 2-means of ``phi`` over the image (the 1-D 2-means
optimum is Otsu's threshold, ``threshold.otsu_threshold``). Why this potential and what it does
on the toy world: docs/paintseg.md.

Prompts become initial masks: a box its box (``initial_mask_from_box``), a point the region of
features similar to the point's around it (``initial_mask_from_point``), a coarse mask itself.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from tqdm import tqdm

from ..diffusion.models import Generator, load_generator
from ..diffusion.painting import Painter, RePaintPainter, StableDiffusionInpaintPainter
from .features import AffinityFeatures, ColourFeatures, DinoFeatures, FeatureExtractor, UNetFeatures
from .threshold import normalize01, otsu_threshold

OTSU_BINS = 256


def paint_seeds(seed: int, iteration: int, step: int, n: int) -> list[int]:
    """The seeds of an image's ``n`` paintings in one step (0: I-step, 1: O-step) of one iteration."""
    rng = np.random.default_rng([int(seed), iteration, step])
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=n)]


def _on_grid(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def two_means(phi: np.ndarray) -> np.ndarray:
    """The high cluster of an exact 2-means of each (H, W) map of ``phi`` (Otsu's threshold of the
    min-max normalised map; a constant map has no high cluster)."""
    out = np.zeros(phi.shape, bool)
    for i, m in enumerate(normalize01(phi)):
        if np.ptp(phi[i]) > 1e-8:
            out[i] = m > otsu_threshold(m, OTSU_BINS)
    return out


def painted_features(images: np.ndarray, keep: np.ndarray, painter: Painter, features: FeatureExtractor,
                     prompts: list[str], seeds: list[list[int]]) -> torch.Tensor:
    """The mean features of ``len(seeds[i])`` paintings of each image (one painter call for all)."""
    n = len(seeds[0])
    rep = np.repeat(np.arange(len(images)), n)
    painted = painter.paint(images[rep], keep[rep], [prompts[i] for i in rep], [s for ss in seeds for s in ss])
    f = features(painted)
    return f.reshape(len(images), n, *f.shape[1:]).mean(1)


def contrastive_potential(f: torch.Tensor, p_in: torch.Tensor, p_out: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``phi = |F - P_I| - |F - P_O|`` per feature cell, brought to the image's ``size`` (bilinear)."""
    phi = (f - p_in).norm(dim=1, keepdim=True) - (f - p_out).norm(dim=1, keepdim=True)
    return _on_grid(phi, size)[:, 0].numpy()


def amcp(images: np.ndarray, initial_masks: np.ndarray, painter: Painter, features: FeatureExtractor,
         cfg, seeds: list[int], prompts: list[str], inpaint_prompts: list[str] | None = None) -> np.ndarray:
    """AMCP on one batch (all of it painted in one painter call per step); see :func:`paintseg`."""
    inpaint_prompts = prompts if inpaint_prompts is None else inpaint_prompts
    size = images.shape[1:3]
    f = features(images)
    masks = initial_masks.copy()
    for it in range(cfg.iterations):
        step_seeds = [[paint_seeds(s, it, k, cfg.n_paintings) for s in seeds] for k in (0, 1)]
        grown = np.stack([ndimage.binary_dilation(m, iterations=cfg.grow) for m in masks]) if cfg.grow else masks
        p_in = painted_features(images, ~grown, painter, features, inpaint_prompts, step_seeds[0])
        p_out = painted_features(images, masks, painter, features, prompts, step_seeds[1])
        new = two_means(contrastive_potential(f, p_in, p_out, size))
        if cfg.min_component > 1:
            new = np.stack([drop_small_components(m, cfg.min_component) for m in new])
        degenerate = ~new.any((1, 2)) | new.all((1, 2))
        masks = np.where(degenerate[:, None, None], masks, new)
    return masks


def paintseg(images: np.ndarray, initial_masks: np.ndarray, painter: Painter, features: FeatureExtractor,
             cfg, seeds: list[int], prompts: list[str], inpaint_prompts: list[str] | None = None,
             progress: bool = True) -> np.ndarray:
    """Refine masks by AMCP: uint8 (B, H, W, 3) images and their bool (B, H, W) initial masks ->
    bool (B, H, W) masks after ``cfg.iterations`` iterations of ``cfg.n_paintings`` paintings per
    step, ``cfg.batch_size`` images at a time (``cfg``: a ``params.PaintSeg``). ``seeds``: one per
    image (its paintings' seeds derive from it, so an image's result does not depend on its
    batch); ``prompts``: the painter's text prompt per image (the object's), for the O-step, and
    for the I-step unless ``inpaint_prompts`` are given (e.g. the background alone: "a photo of
    the grass"). A mask that would become empty or the whole image keeps its previous value."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (batch, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if initial_masks.shape != images.shape[:3] or initial_masks.dtype != bool:
        raise ValueError(f"initial masks must be bool {images.shape[:3]}, got {initial_masks.shape} {initial_masks.dtype}")
    if inpaint_prompts is not None and len(inpaint_prompts) != len(images):
        raise ValueError(f"{len(images)} images and {len(inpaint_prompts)} inpainting prompts: one per image")
    if not len(seeds) == len(prompts) == len(images):
        raise ValueError(f"{len(images)} images, {len(seeds)} seeds and {len(prompts)} prompts: one of each per image")
    out = np.empty_like(initial_masks)
    b = cfg.batch_size
    for i in tqdm(range(0, len(images), b), desc="paintseg", disable=not progress or len(images) <= b):
        out[i:i + b] = amcp(images[i:i + b], initial_masks[i:i + b], painter, features, cfg, list(seeds[i:i + b]),
                            list(prompts[i:i + b]), None if inpaint_prompts is None else list(inpaint_prompts[i:i + b]))
    return out


def painter_from_params(cfg, gen: Generator | None = None) -> Painter:
    """The painter ``cfg`` (a ``params.PaintSeg``) names: the SD inpainting checkpoint at
    ``inpaint_model_path`` if set, else RePaint with ``gen`` (default: loaded from ``cfg.generator``)."""
    if cfg.inpaint_model_path:
        return StableDiffusionInpaintPainter(cfg.inpaint_model_path, steps=cfg.steps, guidance=cfg.guidance)
    gen = gen or load_generator(cfg.generator)
    return RePaintPainter(gen, steps=cfg.steps, jump_length=cfg.jump_length, resample=cfg.resample,
                          guidance=cfg.guidance, guidance_max_timestep=cfg.guidance_max_timestep)


def features_from_params(cfg, gen: Generator | None = None) -> FeatureExtractor:
    """The feature extractor ``cfg.features`` names (``unet``: of ``gen``, default ``cfg.generator``'s)."""
    if cfg.features == "colour":
        return ColourFeatures(cfg.position_weight)
    if cfg.features == "affinity":
        return AffinityFeatures(cfg.affinity_path)
    if cfg.features == "unet":
        return UNetFeatures(gen or load_generator(cfg.generator))
    return DinoFeatures(cfg.dino_path)


def drop_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """A bool (H, W) mask without its 8-connected components of fewer than ``min_size`` pixels."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[lab]


def initial_mask_from_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """The bool (H, W) mask of the pixels x0 <= x < x1, y0 <= y < y1 of ``box = (x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = size
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"box {x0},{y0},{x1},{y1} is not x0,y0,x1,y1 with 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}")
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def initial_mask_from_point(image: np.ndarray, point: tuple[int, int], features: FeatureExtractor) -> np.ndarray:
    """The region around ``point = (x, y)`` whose features are similar to the point's: the pixels in
    the near cluster of a 2-means of their feature distance to the point (Otsu), the connected
    component holding the point, its holes filled (PaintSeg's point prompt as a feature-similarity
    region)."""
    x, y = (int(v) for v in point)
    h, w = image.shape[:2]
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"point {x},{y} is outside the {w}x{h} image")
    f = _on_grid(features(image[None]), (h, w))[0]
    dist = (f - f[:, y, x, None, None]).norm(dim=0).numpy()
    near = ~two_means(dist[None])[0]
    lab, _ = ndimage.label(near, structure=np.ones((3, 3)))
    return ndimage.binary_fill_holes(lab == lab[y, x])


def initial_masks_from(kind: str, images: np.ndarray, coarse: np.ndarray, features: FeatureExtractor) -> np.ndarray:
    """The initial masks a ``kind`` of prompt (``paintseg.prompt``) derived from coarse bool (B, H, W)
    masks gives: ``mask`` the masks themselves; ``box`` each mask's bounding box; ``point`` the
    feature-similarity region (:func:`initial_mask_from_point`) around the mask's most interior pixel
    (the maximum of its distance transform). An empty coarse mask stays empty."""
    if kind not in ("mask", "box", "point"):
        raise ValueError(f"paintseg.prompt must be mask, box or point, not {kind!r}")
    if kind == "mask":
        return coarse.copy()
    out = np.zeros_like(coarse)
    for i, m in enumerate(coarse):
        if not m.any():
            continue
        if kind == "box":
            ys, xs = np.nonzero(m)
            out[i] = initial_mask_from_box((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), m.shape)
        else:
            y, x = np.unravel_index(np.argmax(ndimage.distance_transform_edt(m)), m.shape)
            out[i] = initial_mask_from_point(images[i], (x, y), features)
    return out
