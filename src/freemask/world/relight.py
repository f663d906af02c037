"""Harmonization training pairs from the toy renderer: the same object under two lightings.

Kept out of ``render.py`` so that the stages rendering the world do not depend on it.
"""
from __future__ import annotations

import copy

import numpy as np

from .render import PlacedObject, apply_lighting, paint_object, render_background


def relit_pair(rng: np.random.Generator, cls: str, source_bg: str, target_bg: str, R: int, with_source: bool = False
               ) -> tuple[np.ndarray, ...]:
    """``cls`` at a random place (box side 0.3-0.6 of the image) in a ``target_bg`` scene. Returns
    (composite, target, mask), float32 RGB in [0, 1] and (R, R) bool: ``target`` is the scene lit
    for ``target_bg``; ``composite`` the same scene with the object's pixels lit for ``source_bg``
    instead (each lighting with its own jitter), as if the object had been cut out of a
    ``source_bg`` image and pasted; ``mask`` the object's pixels. ``with_source`` appends that source
    image: a ``source_bg`` background under the very lighting (jitter included) the object's pixels
    got, drawn after everything else so that the first three arrays do not change."""
    size = float(rng.uniform(0.3, 0.6))
    cx, cy = rng.uniform(size / 2, 1 - size / 2, 2)
    img = render_background(rng, target_bg, R)
    mask = paint_object(img, np.zeros((R, R), np.uint8), rng, PlacedObject(cls, float(cx), float(cy), size))
    target = apply_lighting(img, target_bg, rng)
    lighting = copy.deepcopy(rng)
    source = apply_lighting(img, source_bg, rng)
    composite = np.where(mask[..., None], source, target)
    if not with_source:
        return composite, target, mask
    return composite, target, mask, apply_lighting(render_background(rng, source_bg, R), source_bg, lighting)
