"""The world's true placement prior as a judge, and placements that break it.

Two ways to name a placement of one object:

- the renderer's *frame* ``(cx, cy, size)``: the centre and side of the local box an object is drawn
  in (:class:`freemask.world.render.PlacedObject`, what :func:`render.place` draws);
- the *box* ``(cx, cy, side)``: the centre of the object's bounding box and its longer side, all
  fractions of the image -- what ``compose.paste`` takes for a cut-out.

:func:`object_extent` links the two (the object's bounding box inside its frame, measured from the
renderer's own shapes). :func:`plausible` judges a frame placement against ``spec.PLACEMENT``
(vertical range, which is where the support puts air and ground objects, size for the height, and
inside the image sideways, as ``render.place`` draws); :func:`plausible_box` judges a box placement.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .render import PlacedObject, object_parts, place
from .spec import CLASSES, PLACEMENT, SUPPORT, class_index

# render.place draws size = (size_at_top + size_slope * cy) * uniform(*SIZE_JITTER)
SIZE_JITTER = (0.85, 1.15)
_EPS = 1e-9
_MEASURE_R = 1000  # resolution at which object_extent measures the shapes (1/1000 of the frame)

NEGATIVE_KINDS = ("band", "size", "support", "edge", "uniform")


@lru_cache(maxsize=None)
def object_extent(cls: str) -> tuple[float, float, float, float]:
    """(u0, u1, v0, v1): the object's bounding box in its frame, in units of the frame's side, with
    the frame centre at 0 (e.g. a ball: -0.45, 0.45, -0.45, 0.45)."""
    class_index(cls)
    s = 0.5
    mask = np.zeros((_MEASURE_R, _MEASURE_R), bool)
    for m, _ in object_parts(np.random.default_rng(0), PlacedObject(cls, 0.5, 0.5, s), _MEASURE_R):
        mask |= m
    ys, xs = np.nonzero(mask)
    edge = lambda i: (i / _MEASURE_R - 0.5) / s  # noqa: E731  (pixel edge -> frame units)
    return edge(xs.min()), edge(xs.max() + 1), edge(ys.min()), edge(ys.max() + 1)


def box_side_ratio(cls: str) -> float:
    """The box's longer side over the frame side."""
    u0, u1, v0, v1 = object_extent(cls)
    return max(u1 - u0, v1 - v0)


def box_of_frame(cls: str, cx: float, cy: float, size: float) -> tuple[float, float, float]:
    """The box placement (centre of the bounding box, longer side) of an object drawn in this frame."""
    u0, u1, v0, v1 = object_extent(cls)
    return cx + (u0 + u1) / 2 * size, cy + (v0 + v1) / 2 * size, box_side_ratio(cls) * size


def frame_of_box(cls: str, cx: float, cy: float, side: float) -> tuple[float, float, float]:
    """Inverse of :func:`box_of_frame`."""
    u0, u1, v0, v1 = object_extent(cls)
    size = side / box_side_ratio(cls)
    return cx - (u0 + u1) / 2 * size, cy - (v0 + v1) / 2 * size, size


def expected_size(cls: str, cy: float) -> float:
    """The frame side the prior gives a class at height ``cy`` before the jitter."""
    p = PLACEMENT[cls]
    return p.size_at_top + p.size_slope * cy


def plausible(cls: str, cx: float, cy: float, size: float, tolerance: float = 0.0) -> bool:
    """Whether the world's placement prior accepts a frame placement: ``cy`` in the class's vertical
    range, ``size / expected_size(cy)`` within ``SIZE_JITTER``, and the frame inside the image
    sideways (``size/2 <= cx <= 1 - size/2``). ``tolerance`` widens every bound by that much (image
    fractions for positions, the size ratio for the size)."""
    p, t = PLACEMENT[cls], tolerance + _EPS
    if size <= 0 or not p.y_range[0] - t <= cy <= p.y_range[1] + t:
        return False
    ratio = size / expected_size(cls, cy)
    if not SIZE_JITTER[0] - t <= ratio <= SIZE_JITTER[1] + t:
        return False
    return size / 2 - t <= cx <= 1 - size / 2 + t


def plausible_box(cls: str, cx: float, cy: float, side: float, tolerance: float = 0.0) -> bool:
    """:func:`plausible` for a box placement (bounding-box centre, longer side), as compose pastes."""
    return plausible(cls, *frame_of_box(cls, cx, cy, side), tolerance)


def _outside(rng: np.random.Generator, lo: float, hi: float, a: float, b: float) -> float:
    """A value uniform over [lo, a) and (b, hi] (the part of [lo, hi] outside [a, b])."""
    left, right = max(0.0, a - lo), max(0.0, hi - b)
    u = rng.uniform(0, left + right)
    return lo + u if u < left else b + (u - left)


def implausible(rng: np.random.Generator, cls: str, kind: str, margin: float = 0.02) -> PlacedObject:
    """A frame placement of ``cls`` that breaks the prior by at least ``margin`` in one way:

    - ``band``: the height is outside the class's vertical range (the size is the one the prior
      gives at that height, so only the height is wrong);
    - ``size``: the right height, a size 0.5-0.83 or 1.17-2 times the expected one (margin 0.02);
    - ``support``: where an object of the other support stands (an air object on the ground, a
      ground object in the sky), at that object's size;
    - ``edge``: the right height and size, sticking out of the image sideways;
    - ``uniform``: anywhere, at any side from 0.1 to 0.7 (uniform in log), that the prior refuses.
    """
    p = PLACEMENT[cls]
    ok = place(rng, cls)
    if kind == "band":
        cy = _outside(rng, 0.05, 0.95, p.y_range[0] - margin, p.y_range[1] + margin)
        size = expected_size(cls, cy) * rng.uniform(*SIZE_JITTER)
        return PlacedObject(cls, float(rng.uniform(size / 2, 1 - size / 2)), float(cy), float(size))
    if kind == "size":
        f = rng.uniform(0.5, SIZE_JITTER[0] - margin) if rng.uniform() < 0.5 else rng.uniform(SIZE_JITTER[1] + margin, 2.0)
        size = expected_size(cls, ok.cy) * f
        return PlacedObject(cls, float(rng.uniform(min(size / 2, 0.5), max(1 - size / 2, 0.5))), ok.cy, float(size))
    if kind == "support":
        others = [c for c in CLASSES if SUPPORT[c] != SUPPORT[cls]]
        while True:  # the air and ground ranges overlap: keep a placement the prior refuses for cls
            o = place(rng, others[int(rng.integers(len(others)))])
            if not plausible(cls, o.cx, o.cy, o.size, margin):
                return PlacedObject(cls, o.cx, o.cy, o.size)
    if kind == "edge":
        off = rng.uniform(margin, ok.size / 2)
        cx = ok.size / 2 - off if rng.uniform() < 0.5 else 1 - ok.size / 2 + off
        return PlacedObject(cls, float(cx), ok.cy, ok.size)
    if kind == "uniform":
        while True:
            size = float(np.exp(rng.uniform(np.log(0.1), np.log(0.7))))
            cx, cy = (float(v) for v in rng.uniform(0, 1, 2))
            if not plausible(cls, cx, cy, size, margin):
                return PlacedObject(cls, cx, cy, size)
    raise ValueError(f"unknown kind of implausible placement {kind!r}; kinds: {', '.join(NEGATIVE_KINDS)}")
