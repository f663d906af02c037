"""The dataset gallery: generated single-object samples, each as its image and its image with the
pseudo-mask overlaid, with its filter score, in one self-contained static HTML page.

The filter score of a sample is :func:`freemask.active.select.scores`: the IoU, for the sample's
class, between the synthetic-trained segmenter's prediction (:func:`freemask.segmenters.mask2former.predict`
on the image as generated) and the sample's pseudo-mask, undecided (255) pixels skipped.

The page embeds its images as base64 PNG ``data:`` URIs and its CSS and JavaScript inline: it refers
to nothing outside itself. Cards are written worst score first (ties by key); the script filters
them by class and score range, re-sorts them and counts the ones shown. The controls' start values
may be given in the URL fragment (``gallery.html#class=bird&min=0&max=0.5&sort=best``). The same
samples, scores and options give the same bytes.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..active.select import scores
from ..data import shards
from ..data.arrays import shard_label
from ..data.voc import voc_palette
from ..errors import DataError
from ..io import write_text
from ..labels import IGNORE_INDEX, LabelSet
from ..params import Gallery
from .grids import overlay

UNDECIDED = (255, 0, 255)  # overlay colour of undecided (255) pixels: in no class's VOC colour
ALPHA = 0.5  # opacity of the mask colours over the image


@dataclass(frozen=True)
class Sample:
    key: str
    cls: str
    background: str
    prompt: str
    image: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) uint8: 0 background, k = class k, 255 undecided


def read_objects(directory: str | Path, labels: LabelSet) -> list[Sample]:
    """The samples of the object shards in ``directory``, in shard order. A sample whose members are
    missing or do not fit (an image that is not (H, W, 3), a label map of another size or with values
    outside ``labels``, a meta.json without a class of ``labels`` or a background, images of
    different sizes) is a DataError naming its shard."""
    first_shape: list[tuple] = []

    def image(m: shards.Sample) -> np.ndarray:
        img = m["image.png"]
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise DataError(m.shard, f"sample {m.key!r}: image.png is {img.dtype} {img.shape}, not RGB uint8 (H, W, 3)")
        if not first_shape:
            first_shape.append(img.shape)
        if img.shape != first_shape[0]:
            raise DataError(m.shard, f"sample {m.key!r}: image.png is {img.shape[1]}x{img.shape[0]}, the samples "
                                     f"before it {first_shape[0][1]}x{first_shape[0][0]}")
        return img

    def label(m: shards.Sample) -> np.ndarray:
        lab = shard_label(m, labels.names)
        if lab.shape != m["image.png"].shape[:2]:
            raise DataError(m.shard, f"sample {m.key!r}: label.png is {lab.shape}, its image {m['image.png'].shape[:2]}")
        return lab

    def meta(m: shards.Sample) -> dict:
        meta = m["meta.json"]
        cls = meta.get("class") if isinstance(meta, dict) else None
        if cls not in labels.classes or not isinstance(meta.get("background"), str):
            raise DataError(m.shard, f"sample {m.key!r}: meta.json needs a class of {', '.join(labels.classes)} and a "
                                     f"background, got {meta!r}")
        return meta

    m = shards.read_members([directory], ("image.png", "label.png", "meta.json"),
                            {"image.png": image, "label.png": label, "meta.json": meta})
    return [Sample(key, meta["class"], meta["background"], str(meta.get("prompt", "")), img, lab)
            for (_, key), img, lab, meta in zip(m["key"], m["image.png"], m["label.png"], m["meta.json"])]


def pick(samples: Sequence[Sample], n: int) -> list[Sample]:
    """At most ``n`` samples, in key order: taken in turn one from each class (classes and samples in
    key order) until ``n`` are taken or none is left."""
    by_class: dict[str, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: s.key):
        by_class.setdefault(s.cls, []).append(s)
    queues = [by_class[c] for c in sorted(by_class)]
    out: list[Sample] = []
    for i in range(max(map(len, queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return sorted(out[:n], key=lambda s: s.key)


def filter_scores(model, samples: Sequence[Sample], labels: LabelSet, batch_size: int = 32) -> np.ndarray:
    """Each sample's filter score: :func:`freemask.active.select.scores` of ``model``'s predictions."""
    from ..segmenters.mask2former import predict

    if not samples:
        return np.zeros(0, np.float64)
    preds = predict(model, np.stack([s.image for s in samples]), batch_size)
    return scores(preds, np.stack([s.label for s in samples]), [labels.index(s.cls) for s in samples])


def worst_first(samples: Sequence[Sample], values: Sequence[float]) -> list[int]:
    """Indices of ``samples`` by score, lowest first; equal scores by key."""
    return sorted(range(len(samples)), key=lambda i: (float(values[i]), samples[i].key))


def png_uri(array: np.ndarray, scale: int) -> str:
    """A uint8 image enlarged ``scale`` times (nearest neighbour) as a base64 PNG data URI."""
    big = np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)
    return "data:image/png;base64," + base64.b64encode(shards.encode_png(big)).decode("ascii")


def mask_overlay(image: np.ndarray, label: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``image`` with its classes in the VOC colours (:func:`freemask.reports.grids.overlay`) and its
    undecided pixels in ``UNDECIDED``, each blended at ``alpha``."""
    out = overlay(image, label, alpha)
    undecided = label == IGNORE_INDEX
    out[undecided] = ((1 - alpha) * image[undecided].astype(np.float32)
                      + alpha * np.array(UNDECIDED, np.float32)).astype(np.uint8)
    return out


def _rgb(colour) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def class_colours(labels: LabelSet) -> dict[str, str]:
    """Each class's overlay colour (the VOC palette at its label) as #rrggbb."""
    pal = voc_palette()
    return {c: _rgb(pal[3 * labels.index(c): 3 * labels.index(c) + 3]) for c in labels.classes}


CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #f4f4f4; }
header { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid #ccc; padding: 8px 16px; }
h1 { font-size: 18px; margin: 0 0 4px; }
header p { margin: 2px 0; max-width: 70em; }
#controls { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center; margin: 6px 0; }
#controls input[type=number] { width: 5em; }
#counter { font-weight: bold; }
.legend span { display: inline-block; margin-right: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-right: 4px;
  border: 1px solid #888; }
#cards { display: flex; flex-wrap: wrap; gap: 10px; padding: 12px 16px; }
.card { margin: 0; background: #fff; border: 1px solid #ccc; border-top-width: 4px; padding: 6px; }
.card[hidden] { display: none; }
.card img { display: inline-block; image-rendering: pixelated; }
.card figcaption { font-size: 12px; margin-top: 2px; }
.card .key { font-family: ui-monospace, monospace; }
.card .score { font-weight: bold; }
""".strip()

# Reads the controls' start values from the URL fragment, then on every change: keeps the cards of the
# chosen class whose score is within [min, max] (an empty bound is no bound), orders them and counts.
SCRIPT = """
(function () {
  var grid = document.getElementById("cards");
  var cards = Array.prototype.slice.call(grid.querySelectorAll(".card"));
  var cls = document.getElementById("class"), lo = document.getElementById("min"),
      hi = document.getElementById("max"), sort = document.getElementById("sort"),
      counter = document.getElementById("counter");
  var start = new URLSearchParams(location.hash.slice(1));
  [["class", cls], ["min", lo], ["max", hi], ["sort", sort]].forEach(function (p) {
    if (start.has(p[0])) { p[1].value = start.get(p[0]); }
  });
  function score(c) { return parseFloat(c.dataset.score); }
  function byKey(a, b) { return a.dataset.key < b.dataset.key ? -1 : a.dataset.key > b.dataset.key ? 1 : 0; }
  var orders = {
    worst: function (a, b) { return score(a) - score(b) || byKey(a, b); },
    best: function (a, b) { return score(b) - score(a) || byKey(a, b); },
    key: byKey
  };
  function update() {
    var min = parseFloat(lo.value), max = parseFloat(hi.value), shown = 0;
    cards.slice().sort(orders[sort.value] || orders.worst).forEach(function (c) {
      var s = score(c);
      var keep = (!cls.value || c.dataset.class === cls.value) && !(s < min) && !(s > max);
      c.hidden = !keep;
      shown += keep ? 1 : 0;
      grid.appendChild(c);
    });
    counter.textContent = shown + " of " + cards.length + " samples shown";
  }
  [cls, lo, hi, sort].forEach(function (el) { el.addEventListener("input", update); });
  update();
})();
""".strip()


def _card(s: Sample, score: float, scale: int, colour: str) -> str:
    e = html.escape
    h, w = s.label.shape
    size = f'width="{w * scale}" height="{h * scale}"'
    return (f'<figure class="card" data-key="{e(s.key)}" data-class="{e(s.cls)}" data-score="{score:.6f}" '
            f'style="border-top-color: {colour}" title="{e(s.prompt)}">'
            f'<img {size} alt="image" src="{png_uri(s.image, scale)}"> '
            f'<img {size} alt="mask overlay" src="{png_uri(mask_overlay(s.image, s.label), scale)}">'
            f'<figcaption><span class="key">{e(s.key)}</span><br>{e(s.cls)} · {e(s.background)} · '
            f'<span class="score">score {score:.3f}</span></figcaption></figure>')


def gallery_html(samples: Sequence[Sample], values: Sequence[float], labels: LabelSet, scale: int = 4,
                 source: str = "", scorer: str = "", total: int | None = None) -> str:
    """The gallery page of ``samples`` with filter scores ``values``. ``source``: the folder they were
    read from, ``scorer``: the segmenter that scored them, ``total``: how many samples the folder
    holds (when ``samples`` is a pick of them); all three only appear in the page's header."""
    if len(samples) != len(values):
        raise ValueError(f"{len(samples)} samples for {len(values)} scores")
    e = html.escape
    colours = class_colours(labels)
    counts = {c: sum(s.cls == c for s in samples) for c in labels.classes}
    options = "".join(f'<option value="{e(c)}">{e(c)} ({counts[c]})</option>' for c in labels.classes if counts[c])
    legend = "".join(f'<span><i style="background: {colours[c]}"></i>{e(c)}</span>' for c in labels.classes)
    legend += f'<span><i style="background: {_rgb(UNDECIDED)}"></i>undecided (255)</span>'
    n = len(samples)
    of = f"{n} of {total} samples" if total is not None and total != n else f"{n} samples"
    cards = "\n".join(_card(samples[i], float(values[i]), scale, colours[samples[i].cls])
                      for i in worst_first(samples, values))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>freemask dataset gallery</title>
<style>
{CSS}
</style>
</head>
<body>
<header>
<h1>Dataset gallery: generated objects</h1>
<p>{of}{f" from <code>{e(source)}</code>" if source else ""}; each shows the image and its pseudo-mask
(classes in their colour, undecided pixels in magenta). <b>Filter score</b>: the IoU, for the sample's class,
between the prediction of the segmenter trained on the synthetic set{f" (<code>{e(scorer)}</code>)" if scorer else ""}
and the pseudo-mask, undecided pixels skipped (0 when the mask has none of its class): the score by
which adversarial filtering (Algorithm 1) keeps or drops a sample. Low scores are the masks the segmenter
disagrees with.</p>
<form id="controls" onsubmit="return false">
<label>class <select id="class"><option value="">all</option>{options}</select></label>
<label>score from <input id="min" type="number" min="0" max="1" step="0.01" value="0"></label>
<label>to <input id="max" type="number" min="0" max="1" step="0.01" value="1"></label>
<label>order <select id="sort"><option value="worst">worst score first</option>
<option value="best">best score first</option><option value="key">key</option></select></label>
<output id="counter">{n} samples (filters need JavaScript)</output>
</form>
<div class="legend">{legend}</div>
</header>
<main id="cards">
{cards}
</main>
<script>
{SCRIPT}
</script>
</body>
</html>
"""


def summary(samples: Sequence[Sample], values: Sequence[float], total: int, labels: LabelSet) -> dict:
    """Counts and score statistics of the gallery, overall and per class (rounded to 4 decimals)."""
    values = np.asarray(values, np.float64)

    def stats(v: np.ndarray) -> dict:
        if not v.size:
            return {"shown": 0}
        return {"shown": int(v.size), "score_mean": round(float(v.mean()), 4), "score_median": round(float(np.median(v)), 4),
                "score_min": round(float(v.min()), 4), "below_0.5": int((v < 0.5).sum())}

    return {"samples": total, **stats(values),
            "empty_masks": int(sum(not (s.label == labels.index(s.cls)).any() for s in samples)),
            "per_class": {c: stats(values[[i for i, s in enumerate(samples) if s.cls == c]]) for c in labels.classes}}


def write_gallery(objects_dir: str | Path, segmenter_dir: str | Path, out: str | Path, labels: LabelSet,
                  cfg: Gallery) -> dict:
    """Read the objects, score a pick of ``cfg.samples`` of them with the segmenter saved in
    ``segmenter_dir``, write the page to ``out`` (atomically); returns :func:`summary` with the
    page's size in bytes."""
    from ..segmenters.mask2former import load_segmenter

    every = read_objects(objects_dir, labels)
    samples = pick(every, cfg.samples)
    values = filter_scores(load_segmenter(segmenter_dir), samples, labels, cfg.batch_size)
    page = gallery_html(samples, values, labels, cfg.scale, str(objects_dir), str(segmenter_dir), len(every))
    write_text(out, page)
    return {**summary(samples, values, len(every), labels), "html_bytes": len(page.encode("utf-8"))}
