"""The toy world's analogs of the paper's Tables 2-4 and Figure 9, laid out from the metrics files."""
from __future__ import annotations

from pathlib import Path

from .figures import plt, _save
from .tables import _fmt

ROLES = {"synthetic": "synthetic only", "upper_bound": "real (whole train split)"}
FINETUNED = {"synthetic_plus_real": "S + R", "real_subset": "R only"}
FILTER_MIOU = "metrics/filter.json:final_val_mIoU"
FILTER_GAIN = "metrics/filter.json:gain_over_round_0"


def _spread_cell(value, stats: dict | None) -> str:
    """This run's value, and the spread's mean ± sd (%) beside it where the spread has the metric."""
    if stats is None or stats["n"] < 2:
        return _fmt(value)
    return f"{_fmt(value)} ({100 * stats['mean']:.1f} ± {100 * stats['sd']:.1f})"


def _columns(evaluated: dict, finetuned: dict) -> dict[str, dict]:
    """Column title -> that segmenter's val summary: the two of `evaluate`, the two of `finetune`."""
    n = finetuned.get("real_images")
    cols = {title: evaluated["val"][role] for role, title in ROLES.items()}
    cols.update({f"{title} ({n} real)": finetuned["val"][run] for run, title in FINETUNED.items()})
    return cols


def table2(evaluated: dict, finetuned: dict, spread_group: dict, classes: list[str]) -> str:
    """Per-class IoU on toy val (%): this run, with the spread's mean ± sd in brackets where the
    spread measured it (the synthetic and real segmenters' per-class IoU)."""
    cols = _columns(evaluated, finetuned)
    roles = {title: role for role, title in ROLES.items()}
    lines = ["| class | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for c in [*classes, "mIoU"]:
        cells = []
        for title, summary in cols.items():
            value = summary["mIoU"] if c == "mIoU" else summary["per_class"].get(c)
            key = (f"metrics/eval.json:val.{roles[title]}_mIoU" if c == "mIoU"
                   else f"metrics/details/eval.json:val.{roles[title]}.per_class.{c}") if title in roles else None
            cells.append(_spread_cell(value, spread_group["metrics"].get(key) if key else None))
        lines.append(f"| {'**mIoU**' if c == 'mIoU' else c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table3(evaluated: dict, finetuned: dict) -> str:
    """Grouped IoU on toy val (%): a row per group and their mean, a column per segmenter; empty
    when the run was evaluated without groups."""
    cols = {t: s["table3"] for t, s in _columns(evaluated, finetuned).items() if "table3" in s}
    if not cols:
        return "The run was evaluated without groups (`evaluate.groups`).\n"
    groups = list(next(iter(cols.values()))["per_group"])
    lines = ["| group | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(_fmt(t["per_group"][g]) for t in cols.values()) + " |")
    lines.append("| **mean** | " + " | ".join(_fmt(t["mIoU"]) for t in cols.values()) + " |")
    return "\n".join(lines) + "\n"


def table4(evaluated: dict, finetuned: dict) -> str | None:
    """Seen / unseen / harmonic mIoU on toy val (%) per segmenter; None when the run's profile has
    no unseen classes."""
    cols = {t: s["table4"] for t, s in _columns(evaluated, finetuned).items() if "table4" in s}
    if not cols:
        return None
    first = next(iter(cols.values()))
    lines = [f"Unseen: {', '.join(first['unseen'])}.", "", "| | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]
    for key, name in (("seen_mIoU", "seen"), ("unseen_mIoU", "unseen"), ("harmonic", "harmonic")):
        lines.append(f"| {name} | " + " | ".join(_fmt(t[key]) for t in cols.values()) + " |")
    return "\n".join(lines) + "\n"


def retention_rows(groups: list[dict], default: float) -> list[tuple[float, dict]]:
    """(α, group) for every group of a retention spread (``freemask spread`` over the runs of
    ``freemask queue retention``) whose only param override is ``active.retain``; the group without
    overrides is the default α. Sorted by α."""
    rows = []
    for g in groups:
        if not g["params"]:
            rows.append((float(default), g))
        elif set(g["params"]) == {"active.retain"}:
            rows.append((float(g["params"]["active.retain"]), g))
    return sorted(rows, key=lambda r: r[0])


def figure9(rows: list[tuple[float, dict]], path: str | Path) -> str:
    """The retention sweep: the filtered segmenter's val mIoU against the share α of fresh samples
    kept (mean ± sd over the seeds of each α), as a PNG at ``path``; returns the same as markdown."""
    lines = ["| retain α | seeds | val mIoU after filtering | change over round 0 |", "|---|---|---|---|"]
    xs, ys, es = [], [], []
    for a, g in rows:
        m, d = g["metrics"].get(FILTER_MIOU), g["metrics"].get(FILTER_GAIN)
        if m is None:
            continue
        xs.append(a), ys.append(100 * m["mean"]), es.append(100 * m["sd"])
        gain = "–" if d is None else f"{100 * d['mean']:+.1f} ± {100 * d['sd']:.1f}"
        lines.append(f"| {a:g} | {', '.join(str(s) for s in g['seeds'])} | {100 * m['mean']:.1f} ± "
                     f"{100 * m['sd']:.1f} | {gain} |")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3)
    ax.set_xlabel("share of fresh samples kept (α)")
    ax.set_ylabel("val mIoU after filtering (%)")
    ax.set_title("Figure 9 analog: retention sweep")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return "\n".join(lines) + "\n"
