"""Adaptive Matching Thesaurus (Free-Mask eq. 3): R(o, b), the share of the captions that mention
background b which also mention object o.

A caption *mentions* a class when one of the class's words (its name, synonyms and their regular
plurals) occurs in it as a whole word, case-insensitively: "category" does not mention cat,
"skyline" not sky, "boathouse" not boat. Words are runs of letters, digits and hyphens (so
"sky-blue" is one word, and "bird's" holds the word bird); a phrase ("living room") matches with
any white space between its words.

Counting is one streaming polars query over the corpus: one regular expression per class, then the
sums of the pairwise products. Corpora: plain text (one caption per line), JSONL, parquet
(a file, a folder or a glob of LAION-style metadata shards) and COCO-captions JSON.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from .errors import DataError, reason

FORMATS = ("txt", "jsonl", "parquet", "coco")
_SUFFIXES = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".json": "coco"}


@dataclass(frozen=True)
class Vocabulary:
    """Words per object class and per background, each list starting with the canonical word."""

    objects: dict[str, tuple[str, ...]]
    backgrounds: dict[str, tuple[str, ...]]


def toy_vocabulary() -> Vocabulary:
    """The toy world's classes and backgrounds with their synonym lists (``world.spec``)."""
    from .world.spec import BACKGROUND_WORDS, BACKGROUNDS, CLASSES, OBJECT_WORDS

    return Vocabulary({c: OBJECT_WORDS[c] for c in CLASSES}, {b: BACKGROUND_WORDS[b] for b in BACKGROUNDS})


def profile_vocabulary(labels) -> Vocabulary:
    """A real profile's words (``freemask.labels.LabelSet``): each class by its name and its
    sub-class phrases, each background by its name."""
    return Vocabulary({c: tuple(dict.fromkeys([c, *labels.varieties.get(c, ())])) for c in labels.classes},
                      {b: (b,) for b in labels.backgrounds})


def load_vocabulary(path: str | Path) -> Vocabulary:
    """A vocabulary from YAML: ``objects: {class: [words...]}`` and ``backgrounds: {name: [words...]}``
    (a class's own name is always one of its words)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise DataError(path, f"not valid YAML ({reason(err)})") from None
    out = {}
    for part in ("objects", "backgrounds"):
        table = data.get(part) if isinstance(data, dict) else None
        if not isinstance(table, dict) or not table:
            raise DataError(path, f"expected a non-empty '{part}' mapping of name -> list of words")
        for name, words in table.items():
            if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
                raise DataError(path, f"{part}.{name}: expected a list of words")
        out[part] = {str(n): tuple(dict.fromkeys([str(n), *w])) for n, w in table.items()}
    return Vocabulary(out["objects"], out["backgrounds"])


def word_forms(word: str) -> set[str]:
    """A word or phrase in lower case with the regular plurals of its last word (-s, -es, -y -> -ies)."""
    word = " ".join(word.lower().split())
    head, _, last = word.rpartition(" ")
    plurals = {last + "s"}
    if re.search(r"(s|x|z|ch|sh)$", last):
        plurals.add(last + "es")
    if re.search(r"[^aeiou]y$", last):
        plurals.add(last[:-1] + "ies")
    return {word} | {f"{head} {p}".strip() for p in plurals}


def pattern(words: tuple[str, ...]) -> str:
    """The regular expression that finds any of ``words`` (and their plurals) as a whole word in a
    lower-cased caption."""
    forms = sorted({f for w in words for f in word_forms(w)}, key=lambda f: (-len(f), f))
    alternatives = "|".join(r"\s+".join(re.escape(part) for part in f.split(" ")) for f in forms)
    return rf"(?:^|[^a-z0-9\-])(?:{alternatives})(?:$|[^a-z0-9\-])"


def mentions(words: tuple[str, ...]) -> pl.Expr:
    """Whether the ``caption`` column mentions any of ``words`` (null: no)."""
    return pl.col("caption").fill_null("").str.to_lowercase().str.contains(pattern(words))


def corpus_format(path: str | Path, fmt: str = "auto") -> str:
    """``fmt``, or the format its suffix names (a folder is a set of parquet shards)."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ValueError(f"unknown corpus format {fmt!r}; one of auto, {', '.join(FORMATS)}")
        return fmt
    p = Path(path)
    if p.is_dir() or "*" in str(p):
        return "parquet"
    if p.suffix.lower() not in _SUFFIXES:
        raise DataError(path, f"cannot tell the corpus format from the suffix {p.suffix!r}; "
                              f"name it (one of {', '.join(FORMATS)})")
    return _SUFFIXES[p.suffix.lower()]


def scan_captions(path: str | Path, fmt: str = "auto", field: str = "caption") -> pl.LazyFrame:
    """The corpus as a lazy frame with one string column, ``caption`` (``field`` names it in JSONL
    and parquet; LAION's metadata calls it ``TEXT``)."""
    fmt = corpus_format(path, fmt)
    p = Path(path)
    if "*" not in str(p) and not p.exists():
        raise FileNotFoundError(f"{path}: no caption corpus there")
    if fmt == "txt":
        return pl.scan_lines(p, name="caption")
    if fmt == "coco":
        return pl.LazyFrame({"caption": _coco_captions(p)}, schema={"caption": pl.String})
    scan = pl.scan_ndjson(p) if fmt == "jsonl" else pl.scan_parquet(p / "*.parquet" if p.is_dir() else p)
    return scan.select(pl.col(field).cast(pl.String).alias("caption"))


def _coco_captions(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(path, f"not valid JSON ({reason(err)})") from None
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list) or not all(isinstance(a, dict) and isinstance(a.get("caption"), str) for a in anns):
        raise DataError(path, "not a COCO-captions file: expected 'annotations', a list of objects with a 'caption' string")
    return [a["caption"] for a in anns]


def count(captions: pl.LazyFrame, vocab: Vocabulary, source: str | Path = "caption corpus") -> dict:
    """``{"captions": n, "background": {b: n_b}, "both": {(o, b): n_ob}}`` in one streaming pass;
    a corpus that does not read is a DataError naming ``source``."""
    flags = [mentions(words).alias(f"b:{b}") for b, words in vocab.backgrounds.items()]
    flags += [mentions(words).alias(f"o:{o}") for o, words in vocab.objects.items()]
    sums = [pl.len().alias("captions")]
    sums += [pl.col(f"b:{b}").sum().alias(f"b:{b}") for b in vocab.backgrounds]
    sums += [(pl.col(f"b:{b}") & pl.col(f"o:{o}")).sum().alias(f"{o}|{b}") for b in vocab.backgrounds for o in vocab.objects]
    try:
        row = captions.select(flags).select(sums).collect(engine="streaming").row(0, named=True)
    except (pl.exceptions.ColumnNotFoundError, pl.exceptions.ComputeError, pl.exceptions.SchemaError, OSError) as err:
        raise DataError(source, reason(err)) from None
    return {"captions": row["captions"], "background": {b: row[f"b:{b}"] for b in vocab.backgrounds},
            "both": {(o, b): row[f"{o}|{b}"] for b in vocab.backgrounds for o in vocab.objects}}


def table(counts: dict) -> pl.DataFrame:
    """One row per (object, background): ``n_background``, ``n_both`` and ``R`` = n_both / n_background
    (null when no caption mentions the background), in vocabulary order."""
    rows = [{"object": o, "background": b, "n_background": counts["background"][b], "n_both": n,
             "R": n / counts["background"][b] if counts["background"][b] else None}
            for (o, b), n in counts["both"].items()]
    return pl.DataFrame(rows, schema={"object": pl.String, "background": pl.String, "n_background": pl.Int64,
                                      "n_both": pl.Int64, "R": pl.Float64})


def build(path: str | Path, vocab: Vocabulary, fmt: str = "auto", field: str = "caption") -> pl.DataFrame:
    """The thesaurus of a caption corpus (:func:`table` of :func:`count`); errors name the file."""
    return table(count(scan_captions(path, fmt, field), vocab, source=path))


def lookup(thesaurus: pl.DataFrame) -> dict[str, dict[str, float]]:
    """``{background: {object: R}}`` (null R left out)."""
    out: dict[str, dict[str, float]] = {}
    for r in thesaurus.iter_rows(named=True):
        if r["R"] is not None:
            out.setdefault(r["background"], {})[r["object"]] = r["R"]
    return out


def allowed(thesaurus: pl.DataFrame, background: str, threshold: float) -> list[str]:
    """The objects that may join a scene of ``background``: R(o, background) above ``threshold``."""
    return _above(lookup(thesaurus).get(background, {}), threshold)


def _above(row: dict[str, float], threshold: float) -> list[str]:
    return [o for o, r in row.items() if r > threshold]


def allowed_labels(thesaurus: pl.DataFrame, classes: list[str], threshold: float) -> dict[str, set[int]]:
    """Background -> the labels (1-based index in ``classes``) of the classes whose R(o, b) is above
    ``threshold``; a class of ``classes`` the table does not have is a ValueError."""
    missing = set(classes) - set(thesaurus["object"])
    if missing:
        raise ValueError(f"the thesaurus has no row for {', '.join(sorted(missing))}")
    return {b: {classes.index(o) + 1 for o in _above(row, threshold) if o in classes} for b, row in lookup(thesaurus).items()}


def background_weights(thesaurus: pl.DataFrame, classes: list[str], backgrounds: list[str],
                       threshold: float) -> dict[str, list[float]]:
    """Class -> weights over ``backgrounds`` for the backgrounds its single-object prompts are drawn
    from: the number of captions mentioning both (so P(b | o) as the corpus has it) where R(o, b) is
    above ``threshold``, 0 elsewhere. A class with no such background is a ValueError naming it."""
    both = {(r["object"], r["background"]): (r["n_both"], r["R"]) for r in thesaurus.iter_rows(named=True)}
    out, empty = {}, []
    for o in classes:
        w = [float(both[o, b][0]) if (o, b) in both and (both[o, b][1] or 0) > threshold else 0.0 for b in backgrounds]
        if sum(w) == 0:
            empty.append(o)
        out[o] = w
    if empty:
        raise ValueError(f"no background has R(o, b) > {threshold} for {', '.join(empty)} (lower "
                         f"thesaurus.threshold, or give the corpus captions that mention them)")
    return out


def write_csv(thesaurus: pl.DataFrame, path: str | Path) -> None:
    """The table as CSV, R to 6 decimals (equal counts give equal bytes)."""
    from .io import write_text

    write_text(path, thesaurus.with_columns(pl.col("R").round(6)).write_csv())


def read_csv(path: str | Path) -> pl.DataFrame:
    """A table :func:`write_csv` wrote."""
    try:
        df = pl.read_csv(path, schema_overrides={"R": pl.Float64})
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as err:
        raise DataError(path, f"not a thesaurus table ({reason(err)})") from None
    missing = {"object", "background", "n_background", "n_both", "R"} - set(df.columns)
    if missing:
        raise DataError(path, f"not a thesaurus table: no column {', '.join(sorted(missing))}")
    return df


def heatmap(thesaurus: pl.DataFrame, path: str | Path, title: str = "Adaptive Matching Thesaurus R(o, b)") -> None:
    """Objects x backgrounds, R as colour and number (the paper's Figure 5), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .io import write_with

    objects = list(dict.fromkeys(thesaurus["object"]))
    backgrounds = list(dict.fromkeys(thesaurus["background"]))
    r = lookup(thesaurus)
    grid = np.array([[r.get(b, {}).get(o, np.nan) for b in backgrounds] for o in objects])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(backgrounds), 1.0 + 0.45 * len(objects)), dpi=100)
    im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(backgrounds)), backgrounds)
    ax.set_yticks(range(len(objects)), objects)
    for i in range(len(objects)):
        for j in range(len(backgrounds)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if grid[i, j] < 0.5 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)


THESAURUS_CSV = "data/thesaurus/thesaurus.csv"


def prompted_labels(p, path: str | Path = THESAURUS_CSV):
    """The profile's labels (params ``p``) as the ``generate`` stage prompts them: under
    ``generate.backgrounds=thesaurus``, each class on the backgrounds whose R(o, b) in the table at
    ``path`` is above ``thesaurus.threshold``, in proportion to it."""
    from .labels import from_profile, with_background_weights

    labels = from_profile(p.profile)
    if p.generate.backgrounds != "thesaurus":
        return labels
    try:
        weights = background_weights(read_csv(path), list(labels.classes), list(labels.backgrounds),
                                     p.thesaurus.threshold)
    except (ValueError, KeyError) as err:
        raise DataError(path, str(err), hint="re-run the `thesaurus` stage for the profile's classes") from None
    return with_background_weights(labels, weights)
