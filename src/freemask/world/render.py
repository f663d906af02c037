"""Procedural renderer of the toy world, with exact masks.

Images are float32 RGB in [0, 1], shape (R, R, 3). Objects are drawn in a local box frame
(centre cx, cy and side s, all fractions of the image) so that the same shape code serves
single-object images, multi-object scenes and tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import BACKGROUNDS, CLASSES, COOCCURRENCE, LIGHTING, PLACEMENT, class_index


@dataclass(frozen=True)
class PlacedObject:
    cls: str
    cx: float
    cy: float
    size: float


def _grid(R: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:R, 0:R].astype(np.float32)
    return (xx + 0.5) / R, (yy + 0.5) / R


def render_background(rng: np.random.Generator, bg: str, R: int) -> np.ndarray:
    u, v = _grid(R)
    img = np.zeros((R, R, 3), np.float32)
    if bg == "sky":
        top, bot = np.array([0.35, 0.59, 0.90]), np.array([0.67, 0.82, 0.98])
        img[:] = top + (bot - top) * v[..., None]
        img += rng.normal(0, 0.01, (R, R, 1))
    elif bg == "grass":
        img[:] = np.array([0.30, 0.62, 0.22])
        img *= 1 + rng.normal(0, 0.12, (R, R, 1))
    elif bg == "road":
        img[:] = np.array([0.40, 0.40, 0.42])
        img += rng.normal(0, 0.025, (R, R, 1))
        ly, ph = rng.uniform(0.2, 0.8), rng.uniform(0, 1)
        lane = (np.abs(v - ly) < 1.0 / 32 + 0.5 / R) & (((u * 4 + ph) % 1) < 0.5)
        img[lane] = 0.92
    elif bg == "water":
        img[:] = np.array([0.10, 0.28, 0.55])
        f, ph = rng.uniform(5, 9), rng.uniform(0, 6.28)
        w = np.sin(2 * np.pi * f * v + 1.5 * np.sin(2 * np.pi * 2 * u + ph))
        img += 0.08 * w[..., None] * np.array([0.6, 0.8, 1.0])
    elif bg == "floor":
        img[:] = np.array([0.74, 0.6, 0.44])
        img *= 1 + rng.normal(0, 0.03, (R, R, 1))
        ph = rng.uniform(0, 1)
        seams = ((v * 5 + ph) % 1) < (1.0 / R) * 5
        img[seams] *= 0.7
    else:
        raise KeyError(f"unknown background {bg!r}; the toy world has {', '.join(BACKGROUNDS)}")
    return img


def _segment(U, V, p0, p1, th):
    px, py = U - p0[0], V - p0[1]
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip((px * dx + py * dy) / (dx * dx + dy * dy), 0, 1)
    return np.hypot(px - t * dx, py - t * dy) < th


def object_parts(rng: np.random.Generator, obj: PlacedObject, R: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The object's parts as (boolean mask, RGB colour or per-pixel RGB), painted in order."""
    u, v = _grid(R)
    s = obj.size
    U, V = (u - obj.cx) / s, (v - obj.cy) / s
    px = 1.0 / (R * s)  # one pixel in local units
    jit = 1 + rng.uniform(-0.06, 0.06, 3)
    col = lambda c: np.clip(np.array(c) * jit, 0, 1)  # noqa: E731
    c = obj.cls
    if c == "bird":
        th = max(0.11, 0.9 * px)
        m = _segment(U, V, (-0.5, -0.2), (0.0, 0.1), th) | _segment(U, V, (0.5, -0.2), (0.0, 0.1), th)
        return [(m, col((0.06, 0.06, 0.06)))]
    if c == "aeroplane":
        body = (np.abs(U) < 0.5) & (np.abs(V) < max(0.08, 0.7 * px))
        wing = (np.abs(U + 0.05) < max(0.09, 0.7 * px)) & (np.abs(V) < 0.42)
        tail = (U > -0.5) & (U < -0.36) & (V > -0.22) & (V <= 0)
        return [(body | wing | tail, col((0.92, 0.92, 0.95))), (body & (np.abs(U - 0.25) < 0.08), col((0.8, 0.1, 0.1)))]
    if c == "balloon":
        oval = (U / 0.33) ** 2 + ((V + 0.12) / 0.38) ** 2 < 1
        string = (np.abs(U) < max(0.03, 0.5 * px)) & (V > 0.24) & (V < 0.5)
        return [(string, col((0.3, 0.3, 0.3))), (oval, col((0.86, 0.12, 0.12)))]
    if c == "ball":
        disc = np.hypot(U, V) < 0.45
        shade = 1.0 - 0.35 * np.clip(np.hypot(U + 0.15, V + 0.15), 0, 1)
        return [(disc, col((0.86, 0.12, 0.12))[None, None, :] * shade[..., None])]
    if c == "car":
        body = (np.abs(U) < 0.5) & (np.abs(V - 0.05) < 0.17)
        cabin = (np.abs(U) < 0.25) & (V > -0.28) & (V < 0)
        wheels = (np.hypot(U + 0.3, V - 0.22) < 0.14) | (np.hypot(U - 0.3, V - 0.22) < 0.14)
        return [(body | cabin, col((0.95, 0.82, 0.12))), (wheels, col((0.08, 0.08, 0.08)))]
    if c == "boat":
        t = (V - 0.08) / 0.24
        hull = (t >= 0) & (t <= 1) & (np.abs(U) < 0.5 * (1 - 0.35 * t))
        ts = (V + 0.5) / 0.58
        sail = (ts >= 0) & (ts <= 1) & (U >= -0.5 * px) & (U < ts * 0.38)
        return [(sail, col((0.97, 0.97, 0.97))), (hull, col((0.70, 0.15, 0.62)))]
    if c == "tree":
        t = (V + 0.5) / 0.75
        canopy = (t >= 0) & (t <= 1) & (np.abs(U) < t * 0.5)
        trunk = (np.abs(U) < max(0.1, 0.6 * px)) & (V > 0.25) & (V < 0.5)
        return [(trunk, col((0.40, 0.24, 0.08))), (canopy, col((0.08, 0.36, 0.08)))]
    if c == "chair":
        w = max(0.09, 0.8 * px)
        seat = (np.abs(U) < 0.32) & (V > 0.0) & (V < w + 0.02)
        back = (U > 0.32 - w) & (U < 0.32) & (V > -0.5) & (V < 0.02)
        legs = ((np.abs(U + 0.28) < w / 2) | (np.abs(U - 0.28) < w / 2)) & (V > 0) & (V < 0.5)
        return [(seat | back | legs, col((0.45, 0.22, 0.08)))]
    raise KeyError(f"unknown class {c!r}; the toy world has {', '.join(CLASSES)}")


def paint_object(img: np.ndarray, label: np.ndarray, rng: np.random.Generator, obj: PlacedObject) -> np.ndarray:
    """Paint ``obj`` over ``img`` in place; newer pixels overwrite older ones in ``label`` too.

    Returns the object's own full (unoccluded) mask.
    """
    R = img.shape[0]
    full = np.zeros((R, R), bool)
    for m, colour in object_parts(rng, obj, R):
        img[m] = colour[m] if np.ndim(colour) == 3 else colour
        full |= m
    label[full] = class_index(obj.cls)
    return full


def apply_lighting(img: np.ndarray, bg: str, rng: np.random.Generator, jitter: float = 0.08) -> np.ndarray:
    light = LIGHTING[bg]
    factor = light.brightness * rng.uniform(1 - jitter, 1 + jitter)
    tint = np.array(light.tint) * (1 + rng.uniform(-jitter / 2, jitter / 2, 3))
    return np.clip(img * factor * tint, 0, 1).astype(np.float32)


def render_scene(rng: np.random.Generator, bg: str, objects: list[PlacedObject], R: int) -> tuple[np.ndarray, np.ndarray]:
    """A scene with objects painted in list order (later ones occlude). Returns image and label map."""
    img = render_background(rng, bg, R)
    label = np.zeros((R, R), np.uint8)
    for obj in objects:
        paint_object(img, label, rng, obj)
    return apply_lighting(img, bg, rng), label


def single_object_layout(rng: np.random.Generator, cls: str) -> PlacedObject:
    """A centred-ish single object, as in a 'a photo of a {cls} on the {bg}' image."""
    cx, cy = rng.uniform(0.3, 0.7, 2)
    return PlacedObject(cls, float(cx), float(cy), float(rng.uniform(0.32, 0.5)))


def sample_layout(rng: np.random.Generator, bg: str, n_objects: int) -> list[PlacedObject]:
    """Objects drawn from P(o | bg), placed by their placement prior, far (small y) first."""
    probs = COOCCURRENCE[bg]
    names = sorted(probs)
    p = np.array([probs[n] for n in names])
    objs = []
    for _ in range(n_objects):
        cls = names[int(rng.choice(len(names), p=p / p.sum()))]
        objs.append(place(rng, cls))
    return sorted(objs, key=lambda o: (o.cy + o.size / 2, o.cx))


def place(rng: np.random.Generator, cls: str) -> PlacedObject:
    """A position and size for ``cls`` drawn from its true placement prior."""
    pr = PLACEMENT[cls]
    cy = float(rng.uniform(*pr.y_range))
    size = float((pr.size_at_top + pr.size_slope * cy) * rng.uniform(0.85, 1.15))
    cx = float(rng.uniform(size / 2, 1 - size / 2))
    return PlacedObject(cls, cx, cy, size)
