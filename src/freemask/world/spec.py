"""The toy world's vocabulary and its true priors.

Everything a later stage has to *recover* (co-occurrence, placement, lighting) is defined here
once, so the renderer, the caption writer and the checks all read the same table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Background (scene) types, with the preposition used in prompts.
BACKGROUNDS: tuple[str, ...] = ("sky", "grass", "road", "water", "floor")
PREPOSITION: dict[str, str] = {"sky": "in", "grass": "on", "road": "on", "water": "on", "floor": "on"}

# Object classes; index + 1 is the label in the segmentation maps (0 = background).
CLASSES: tuple[str, ...] = ("bird", "aeroplane", "balloon", "ball", "car", "boat", "tree", "chair")

# Pairs that look alike and differ by context (a red disc in the sky vs on the ground).
LOOK_ALIKE: tuple[tuple[str, str], ...] = (("balloon", "ball"),)

# How an object sits in a scene: "air" objects float anywhere in the upper part, "ground"
# objects stand on the ground plane and get larger as they come nearer (lower in the image).
SUPPORT: dict[str, str] = {
    "bird": "air", "aeroplane": "air", "balloon": "air",
    "ball": "ground", "car": "ground", "boat": "ground", "tree": "ground", "chair": "ground",
}

# P(object | background): the co-occurrence structure the thesaurus must recover.
COOCCURRENCE: dict[str, dict[str, float]] = {
    "sky": {"bird": 0.45, "aeroplane": 0.30, "balloon": 0.25},
    "grass": {"tree": 0.40, "ball": 0.30, "bird": 0.15, "chair": 0.15},
    "road": {"car": 0.80, "tree": 0.10, "bird": 0.10},
    "water": {"boat": 0.75, "bird": 0.25},
    "floor": {"chair": 0.55, "ball": 0.35, "balloon": 0.10},
}
# Share of scenes of each background type in the real splits and the caption corpus.
BACKGROUND_FREQ: dict[str, float] = {"sky": 0.2, "grass": 0.25, "road": 0.2, "water": 0.15, "floor": 0.2}


@dataclass(frozen=True)
class Lighting:
    """Per-scene lighting: a brightness factor and an RGB tint, jittered per image."""

    brightness: float
    tint: tuple[float, float, float]


LIGHTING: dict[str, Lighting] = {
    "sky": Lighting(1.08, (0.95, 1.0, 1.08)),
    "grass": Lighting(1.0, (1.0, 1.0, 1.0)),
    "road": Lighting(0.9, (1.0, 1.0, 1.02)),
    "water": Lighting(0.92, (0.9, 1.0, 1.1)),
    "floor": Lighting(0.82, (1.12, 0.96, 0.8)),
}


@dataclass(frozen=True)
class Placement:
    """Placement prior of a class: vertical centre range (0 = top) and size = a + b * y."""

    y_range: tuple[float, float]
    size_at_top: float  # object box side (fraction of the image) at y = 0
    size_slope: float  # growth of the box side per unit of y (perspective for ground objects)


PLACEMENT: dict[str, Placement] = {
    "bird": Placement((0.15, 0.55), 0.16, 0.10),
    "aeroplane": Placement((0.15, 0.5), 0.26, 0.10),
    "balloon": Placement((0.15, 0.55), 0.18, 0.12),
    "ball": Placement((0.55, 0.85), 0.04, 0.30),
    "car": Placement((0.5, 0.85), 0.12, 0.40),
    "boat": Placement((0.45, 0.85), 0.10, 0.40),
    "tree": Placement((0.4, 0.75), 0.20, 0.40),
    "chair": Placement((0.5, 0.85), 0.08, 0.35),
}

# Caption-corpus vocabulary: synonyms and plurals. The first entry is the canonical word.
OBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "bird": ("bird", "birds", "seagull", "seagulls"),
    "aeroplane": ("aeroplane", "aeroplanes", "airplane", "plane", "planes", "jet"),
    "balloon": ("balloon", "balloons"),
    "ball": ("ball", "balls", "football"),
    "car": ("car", "cars", "automobile", "taxi"),
    "boat": ("boat", "boats", "sailboat", "yacht"),
    "tree": ("tree", "trees", "pine"),
    "chair": ("chair", "chairs", "stool"),
}
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "sky": ("sky", "skies", "clouds"),
    "grass": ("grass", "lawn", "meadow", "field"),
    "road": ("road", "street", "roads", "highway"),
    "water": ("water", "lake", "sea", "river"),
    "floor": ("floor", "room", "carpet", "living room"),
}


def class_index(name: str) -> int:
    """Label of a class in segmentation maps (1-based; 0 is background)."""
    try:
        return CLASSES.index(name) + 1
    except ValueError:
        raise KeyError(f"unknown class {name!r}; the toy world has {', '.join(CLASSES)}") from None


def background_distribution(cls: str) -> np.ndarray:
    """P(background | object) over ``BACKGROUNDS``: where the world shows ``cls``, in proportion to
    P(object | background) * P(background)."""
    class_index(cls)
    w = np.array([COOCCURRENCE[b].get(cls, 0.0) * BACKGROUND_FREQ[b] for b in BACKGROUNDS])
    return w / w.sum()


def canonical_background(cls: str) -> str:
    """The background a class is most often seen on (its highest P(o|b) * P(b))."""
    return max(BACKGROUNDS, key=lambda b: COOCCURRENCE[b].get(cls, 0.0) * BACKGROUND_FREQ[b])


def true_priors() -> dict:
    """The renderer's true priors as plain data (written to JSON for later checks)."""
    return {
        "classes": list(CLASSES),
        "backgrounds": list(BACKGROUNDS),
        "cooccurrence_p_object_given_background": COOCCURRENCE,
        "background_freq": BACKGROUND_FREQ,
        "support": SUPPORT,
        "placement": {c: {"y_range": list(p.y_range), "size_at_top": p.size_at_top, "size_slope": p.size_slope}
                      for c, p in PLACEMENT.items()},
        "lighting": {b: {"brightness": light.brightness, "tint": list(light.tint)} for b, light in LIGHTING.items()},
        "look_alike": [list(p) for p in LOOK_ALIKE],
    }
