"""Markdown tables re-made from the metrics JSON files."""
from __future__ import annotations


def _fmt(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def per_class_table(title: str, columns: dict[str, dict], classes: list[str]) -> str:
    """One row per class, one column per named result (values are fractions, shown in %)."""
    names = list(columns)
    lines = [f"### {title}", "", "| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for c in classes:
        lines.append(f"| {c} | " + " | ".join(_fmt(columns[n].get(c)) for n in names) + " |")
    return "\n".join(lines) + "\n"


def mask_quality_tables(mq: dict, classes: list[str]) -> str:
    """The mask-quality table (``generator_quality.json``'s ``mask_quality``): one markdown table per
    reference, a row per rule and resolution subset, mask IoU per class and mean, and the share of
    pixels the rule ignored (only rules with an uncertainty band ignore any)."""
    parts = []
    for key, title, n in (("vs_oracle_on_generated", "vs the oracle on generated samples", mq["n_generated"]),
                          ("vs_truth_on_noised_renders", "vs the truth on noised renders", mq["n_noised_renders"])):
        lines = [f"### Mask IoU {title} (%, {n} images; IoU over non-ignored pixels)", "",
                 "| rule | resolutions | " + " | ".join(classes) + " | mean | ignored |",
                 "|---|---|" + "---|" * (len(classes) + 2)]
        for row in mq["rows"]:
            r = row[key]
            cells = [_fmt(r["iou"]["per_class"].get(c)) for c in classes]
            lines.append(f"| {row['setting']} | {row['resolutions']} | " + " | ".join(cells)
                         + f" | **{_fmt(r['iou']['mean'])}** | {_fmt(r['ignored_share']['mean'])} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _pm(s: dict | None) -> str:
    return "–" if s is None else f"{100 * s['mean']:.1f} ± {100 * s['sd']:.1f}"


def _judged(gain: float | None, method: dict | None, replicates: int) -> str:
    """A gain in points, starred when it exceeds twice the method's sd over two or more replicates."""
    if gain is None:
        return "–"
    beyond = method is not None and replicates >= 2 and abs(gain) > 2 * method["sd"]
    return f"{100 * gain:+.1f}{'*' if beyond else ''}"


def refiners_tables(table: dict, classes: list[str]) -> str:
    """The refiners stage's table (``metrics/details/refiners.json``): per reference, for each method
    the attention masks it starts from, the method (mean ± sd over its replicates) and the gain, per
    class and mean; a gain counts only where it exceeds twice the method's sd."""
    parts = []
    for key, title, n in (("vs_oracle_on_generated", "vs the oracle on generated samples", table["n_generated"]),
                          ("vs_truth_on_noised_renders", "vs the truth on noised renders", table["n_noised_renders"])):
        lines = [f"### Refined mask IoU {title} (%, {n} images, {table['replicates']} replicates of each method)", "",
                 "| masks | " + " | ".join(classes) + " | mean |", "|---|" + "---|" * (len(classes) + 1)]
        for method, rows in table["methods"].items():
            r = rows[key]
            start, m, gain = r["start"], r["method"], r["gain"]
            lines.append(f"| attention (where {method} starts) | "
                         + " | ".join(_fmt(start["per_class"].get(c)) for c in classes) + f" | **{_fmt(start['mean'])}** |")
            lines.append(f"| {method} | " + " | ".join(_pm(m["per_class"].get(c)) for c in classes)
                         + f" | **{_pm(m)}** |")
            cells = [_judged(gain["per_class"].get(c), m["per_class"].get(c), table["replicates"]) for c in classes]
            lines.append(f"| gain of {method} | " + " | ".join(cells) + f" | **{100 * gain['mean']:+.1f}** |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts) + "\n\\* beyond twice the method's sd over its replicates.\n"


COMPOSITION = {"random": "random composition", "same_background": "composition by background",
               "thesaurus": "composition by the thesaurus"}


SPLITS = {"val": "toy val, as stored (JPEG q95, 4:2:0)", "val_raw": "toy val, as rendered (lossless)",
          "fresh_world_val": "val of a world rendered with another seed (JPEG)"}


def _label(metric: str) -> str:
    """``metrics/details/eval.json:val.synthetic.per_class.ball`` -> ``details/eval: val.synthetic.per_class.ball``."""
    path, key = metric.split(":", 1)
    return f"{path.removeprefix('metrics/').removesuffix('.json')}: {key}"


def spread_table(groups: list[dict]) -> str:
    """A row per metric, a column per group of runs: mean ± sd over its seeds (n runs)."""
    heads = [", ".join(f"{k}={v}" for k, v in g["params"].items()) or "defaults" for g in groups]
    lines = ["| metric | " + " | ".join(f"{h} (n={len(g['runs'])})" for h, g in zip(heads, groups)) + " |",
             "|---|" + "---|" * len(groups)]
    for m in groups[0]["metrics"]:
        cells = [f"{g['metrics'][m]['mean']:.3f} ± {g['metrics'][m]['sd']:.3f}" if m in g["metrics"] else "–"
                 for g in groups]
        lines.append(f"| {_label(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def spine_report(headline: dict, details: dict, quality: dict, spread: dict, classes: list[str],
                 compose_mode: str = "same_background") -> str:
    """The toy world's results page from ``metrics/eval.json`` (``headline``), ``metrics/details/eval.json``,
    ``metrics/details/generator_quality.json`` and ``metrics/spread.json``; ``compose_mode``: the
    ``compose.mode`` the synthetic set was made with."""
    out = ["# freemask — toy world results", "",
           "Generated by the `report` stage from `metrics/*.json`; do not edit by hand.", "",
           "## Segmentation (mIoU, %; this run)", "",
           f"Synthetic only: generated objects + {COMPOSITION[compose_mode]}. Upper bound: the real toy train split.",
           "", "| val split | synthetic only | upper bound | ratio |", "|---|---|---|---|"]
    for split, title in SPLITS.items():
        h = headline[split]
        ratio = "–" if h["ratio"] is None else f"{h['ratio']:.3f}"
        out.append(f"| {title} | {_fmt(h['synthetic_mIoU'])} | {_fmt(h['upper_bound_mIoU'])} | {ratio} |")
    g = spread["groups"][0]
    out += ["", f"## Seed spread (mean ± sd over {len(g['runs'])} runs, seeds {g['seeds']}, "
                f"of commit {str(spread['baseline_rev'])[:7]} and its experiments)", "",
            "Runs that differ only in the replicate `seed` (generation, composition and segmenter seeds); "
            "`freemask spread` re-makes this table, `freemask regress` checks a run against it.", "",
            spread_table([g]), "",
            per_class_table("Per-class IoU on toy val (%), this run",
                            {"synthetic (JPEG val)": details["val"]["synthetic"]["per_class"],
                             "upper bound (JPEG val)": details["val"]["upper_bound"]["per_class"],
                             "synthetic (raw val)": details["val_raw"]["synthetic"]["per_class"],
                             "upper bound (raw val)": details["val_raw"]["upper_bound"]["per_class"]},
                            ["background", *classes]),
            "![per-class IoU](figures/per_class_iou.png)", "", "![training curves](figures/training_curves.png)", "",
            "## Generator quality", ""]
    q = quality
    out.append(per_class_table(
        "Recognisability and attention-mask IoU (%)",
        {"classifier acc. on generated": q["classifier_accuracy_on_generated"]["per_class"],
         "mask IoU vs oracle (generated)": q["attention_iou_vs_oracle_on_generated"]["per_class"],
         "mask IoU vs truth (noised renders)": q["attention_iou_vs_truth_on_noised_renders"]["per_class"],
         "same, any background (stress)": q["attention_iou_vs_truth_on_noised_renders_any_background"]["per_class"]},
        classes))
    out.append(f"Means: classifier accuracy {_fmt(q['classifier_accuracy_on_generated']['mean'])}, "
               f"mask IoU vs oracle {_fmt(q['attention_iou_vs_oracle_on_generated']['mean'])} "
               f"({_fmt(q['attention_ignored_share_on_generated']['mean'])} % of pixels ignored), "
               f"mask IoU vs truth {_fmt(q['attention_iou_vs_truth_on_noised_renders']['mean'])} on renders of "
               f"each class on the backgrounds the world shows it on (as the generate stage prompts it), "
               f"{_fmt(q['attention_iou_vs_truth_on_noised_renders_any_background']['mean'])} on renders on any "
               f"background, most of them combinations the world never shows (an aeroplane on a floor).\n")
    bo, br = q["best_fixed_threshold_vs_oracle_on_generated"], q["best_fixed_threshold_vs_truth_on_noised_renders"]
    out.append(per_class_table(
        "The generate rule against the best single fixed threshold (%, the threshold chosen with hindsight "
        "on these very samples)",
        {"rule, vs oracle (generated)": q["attention_iou_vs_oracle_on_generated"]["per_class"],
         f"fixed {bo['threshold']:g}, vs oracle": bo["per_class"],
         "rule, vs truth (noised renders)": q["attention_iou_vs_truth_on_noised_renders"]["per_class"],
         f"fixed {br['threshold']:g}, vs truth": br["per_class"]},
        classes))
    out.append(f"Means: vs the oracle {_fmt(q['attention_iou_vs_oracle_on_generated']['mean'])} (rule) and "
               f"{_fmt(bo['mean'])} (best fixed threshold {bo['threshold']:g}); vs the truth "
               f"{_fmt(q['attention_iou_vs_truth_on_noised_renders']['mean'])} and {_fmt(br['mean'])} "
               f"({br['threshold']:g}).\n")
    out += ["## Mask quality by rule and attention resolution", "",
            "Every mask rule on one recording of the attention (the generate stage's first samples of each "
            "class, re-made with its seeds; the noised renders above), so rows differ only in the rule and "
            "the resolutions.", "", mask_quality_tables(q["mask_quality"], classes)]
    out.append("![generated samples](samples.png)\n")
    return "\n".join(out)
