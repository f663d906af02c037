"""A text-only caption corpus written from sampled scene graphs (synonyms, plurals, noise)."""
from __future__ import annotations

import numpy as np

from .render import sample_layout
from .spec import BACKGROUND_FREQ, BACKGROUND_WORDS, BACKGROUNDS, CLASSES, COOCCURRENCE, OBJECT_WORDS, PREPOSITION

_TEMPLATES = (
    "{objs} {prep} the {bg}",
    "a photo of {objs} {prep} the {bg}",
    "the {bg} with {objs}",
    "{objs} seen {prep} the {bg} today",
    "a view of the {bg} and {objs}",
)
_NUMBERS = {2: "two", 3: "three", 4: "four"}


def _plural_words(words: tuple[str, ...]) -> list[str]:
    return [w for w in words if w.endswith("s") and w != "grass"] or list(words)


def object_phrase(rng: np.random.Generator, cls: str, count: int) -> str:
    words = OBJECT_WORDS[cls]
    if count == 1:
        singular = [w for w in words if w not in _plural_words(words)] or list(words)
        return f"a {singular[int(rng.integers(len(singular)))]}"
    plural = _plural_words(words)
    return f"{_NUMBERS.get(count, 'many')} {plural[int(rng.integers(len(plural)))]}"


def caption(rng: np.random.Generator, bg: str, classes: list[str]) -> str:
    counts: dict[str, int] = {}
    for c in classes:
        counts[c] = counts.get(c, 0) + 1
    phrases = [object_phrase(rng, c, n) for c, n in sorted(counts.items())]
    order = rng.permutation(len(phrases))
    phrases = [phrases[i] for i in order]
    objs = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    bgw = BACKGROUND_WORDS[bg][int(rng.integers(len(BACKGROUND_WORDS[bg])))]
    tpl = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    return tpl.format(objs=objs, prep=PREPOSITION[bg], bg=bgw)


def caption_corpus(seed: int, n: int, max_objects: int) -> list[str]:
    """``n`` captions; each describes a scene sampled from the world's true co-occurrence."""
    rng = np.random.default_rng([seed, 7])
    bgs = list(BACKGROUNDS)
    p = np.array([BACKGROUND_FREQ[b] for b in bgs])
    out = []
    for _ in range(n):
        bg = bgs[int(rng.choice(len(bgs), p=p / p.sum()))]
        layout = sample_layout(rng, bg, int(rng.integers(1, max_objects + 1)))
        out.append(caption(rng, bg, [o.cls for o in layout]))
    return out


def implied_thesaurus(max_objects: int) -> dict[str, dict[str, float]]:
    """R(o, b) that :func:`caption_corpus` implies, from the priors: a caption describes a scene of
    one background b with n ~ U{1..max_objects} objects drawn independently from P(o | b), and
    mentions every object class in it, so R(o, b) = mean over n of 1 - (1 - P(o | b))^n."""
    ns = range(1, max_objects + 1)
    return {b: {o: sum(1 - (1 - COOCCURRENCE[b].get(o, 0.0)) ** n for n in ns) / len(ns) for o in CLASSES}
            for b in BACKGROUNDS}
