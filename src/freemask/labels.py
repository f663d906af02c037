"""The classes a pipeline segments and the prompts it makes for them: the label set of its profile.

Label ``i + 1`` is ``classes[i]``; 0 is background and ``IGNORE_INDEX`` marks pixels no loss or
metric counts. The toy world's label set comes from ``world.spec``; a real profile's from its
``profile`` params (classes, backgrounds with their prepositions, where each class is prompted,
sub-class varieties, and the prompt templates).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True)
class LabelSet:
    classes: tuple[str, ...]
    backgrounds: tuple[str, ...]
    prepositions: dict[str, str]  # background -> "in" / "on"
    # class -> P(background | class) over ``backgrounds``: where its single-object images are prompted
    background_weights: dict[str, np.ndarray]
    varieties: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class -> sub-class phrases
    template: str = "a photo of a {object} {preposition} the {background}"
    scene_template: str = "a photo of the {background}"

    @property
    def names(self) -> tuple[str, ...]:
        """Label names in label order, background first."""
        return ("background", *self.classes)

    def index(self, cls: str) -> int:
        """The label of ``cls`` in segmentation maps (1-based; 0 is background)."""
        try:
            return self.classes.index(cls) + 1
        except ValueError:
            raise KeyError(f"unknown class {cls!r}; the profile's classes are {', '.join(self.classes)}") from None

    def prompt(self, phrase: str, background: str) -> str:
        return self.template.format(object=phrase, preposition=self.prepositions[background], background=background)

    def scene_prompt(self, background: str) -> str:
        return self.scene_template.format(background=background, preposition=self.prepositions[background])

    def phrase(self, cls: str, seed: int) -> str:
        """The class word, or the sub-class phrase its ``varieties`` entry picks for this seed."""
        options = self.varieties.get(cls)
        return options[int(np.random.default_rng(seed).integers(len(options)))] if options else cls


def toy_labels() -> LabelSet:
    """The toy world's classes, backgrounds and P(background | class) (``world.spec``)."""
    from .world.spec import BACKGROUNDS, CLASSES, PREPOSITION, background_distribution

    return LabelSet(CLASSES, BACKGROUNDS, dict(PREPOSITION), {c: background_distribution(c) for c in CLASSES})


def with_background_weights(labels: LabelSet, weights: dict[str, list[float]]) -> LabelSet:
    """``labels`` prompting each class on backgrounds in proportion to ``weights`` (over
    ``labels.backgrounds``), e.g. the thesaurus's (``thesaurus.background_weights``)."""
    from dataclasses import replace

    norm = {c: np.asarray(w, dtype=np.float64) / float(np.sum(w)) for c, w in weights.items()}
    return replace(labels, background_weights={c: norm[c] for c in labels.classes})


def from_profile(profile) -> LabelSet:
    """The label set of a ``params.Profile``: the toy world's for the toy profile; otherwise its
    classes, backgrounds and varieties, each class prompted uniformly on its ``places`` (all
    backgrounds when it has none)."""
    if profile.name == "toy":
        return toy_labels()
    backgrounds = tuple(profile.backgrounds)
    weights = {}
    for cls in profile.classes:
        on = profile.places.get(cls, backgrounds)
        w = np.array([float(b in on) for b in backgrounds])
        weights[cls] = w / w.sum()
    return LabelSet(tuple(profile.classes), backgrounds, dict(profile.backgrounds), weights,
                    {c: tuple(v) for c, v in profile.varieties.items()}, profile.template, profile.scene_template)
