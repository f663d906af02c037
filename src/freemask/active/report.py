"""Markdown tables and a PNG curve from the active-learning rounds (Figure 8) and from a
retention sweep (Figure 9: final val mIoU against the kept share alpha)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _f(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def rounds_table(rounds: list[dict]) -> str:
    """One row per round: pool size, fresh/kept counts, score summary, threshold, val mIoU."""
    lines = ["| round | pool | generated | kept | kept share | score mean | score median | score min–max "
             "| threshold | val mIoU |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        s = r.get("score", {})
        lines.append(f"| {r['round']} | {r['pool']} | {r.get('generated', '–')} | {r.get('kept', '–')} "
                     f"| {_f(r.get('kept_share'), 2)} | {_f(s.get('mean'))} | {_f(s.get('median'))} "
                     f"| {_f(s.get('min'))}–{_f(s.get('max'))} | {_f(r.get('threshold'))} | {_f(r.get('val_mIoU'))} |")
    return "\n".join(lines) + "\n"


def judge_table(rounds: list[dict]) -> str:
    """One row per judged round: bad masks (against the oracle), the score's AUC at finding them, and
    the catch rate of the spoilt copies (precision, recall, recall per kind)."""
    lines = ["| round | fresh | bad masks | AUC (bad masks) | spoilt | precision | recall | shift | erode | swap |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        j = r.get("judge")
        if j is None:
            continue
        c = j["catch"]
        lines.append(f"| {r['round']} | {r['generated']} | {j['bad']} | {_f(j['auc'])} | {c['spoilt']} "
                     f"| {_f(c['precision'])} | {_f(c['recall'])} | {_f(c['recall_shift'])} | {_f(c['recall_erode'])} "
                     f"| {_f(c['recall_swap'])} |")
    return "\n".join(lines) + "\n"


def sweep_table(sweep: dict[float, list[dict]]) -> str:
    """One row per retention share: final pool and val mIoU of round 0 and of the last round."""
    lines = ["| retain (α) | rounds | final pool | round-0 val mIoU | final val mIoU | gain |", "|---|---|---|---|---|---|"]
    for alpha in sorted(sweep):
        rs = sweep[alpha]
        first, last = rs[0].get("val_mIoU"), rs[-1].get("val_mIoU")
        gain = None if first is None or last is None else last - first
        lines.append(f"| {alpha:.2f} | {len(rs) - 1} | {rs[-1]['pool']} | {_f(first)} | {_f(last)} | {_f(gain)} |")
    return "\n".join(lines) + "\n"


def plot_curves(series: dict[str, list[dict]], path: str | Path, sweep: bool = False) -> None:
    """val mIoU against round, one line per series (Figure 8); with ``sweep`` (keys are retention
    shares) also final val mIoU against alpha (Figure 9) in a second panel."""
    missing = [k for k, rs in series.items() if any("val_mIoU" not in r for r in rs)]
    if missing:
        raise ValueError(f"no val_mIoU in the rounds of {missing}: run with a val set")
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(9 if sweep else 4.5, 3.2), squeeze=False)
    ax = axes[0, 0]
    for name, rs in series.items():
        ax.plot([r["round"] for r in rs], [r["val_mIoU"] for r in rs], marker="o", label=name)
    ax.set(xlabel="round", ylabel="val mIoU", title="active learning")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    if sweep:
        alphas = sorted(series, key=float)
        axes[0, 1].plot([float(a) for a in alphas], [series[a][-1]["val_mIoU"] for a in alphas], marker="o")
        axes[0, 1].set(xlabel="retain (α)", ylabel="final val mIoU", title="retention ratio")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def plot_rows(rounds: list[dict]) -> list[dict]:
    """One flat record per round: what dvc.yaml's plots draw."""
    out = []
    for r in rounds:
        judge = r.get("judge", {})
        catch = judge.get("catch", {})
        out.append({"round": r["round"], "pool": r["pool"], "val_mIoU": r.get("val_mIoU"),
                    "score_median": r.get("score", {}).get("median"), "threshold": r.get("threshold"),
                    "auc_bad_masks": judge.get("auc"), "catch_precision": catch.get("precision"),
                    "catch_recall": catch.get("recall")})
    return out


def headline(rounds: list[dict]) -> dict:
    """The final val mIoU, its gain over round 0, and the filter's judgement pooled over the rounds
    (mean of the per-round figures)."""
    judged = [r["judge"] for r in rounds if "judge" in r]

    def mean(values):
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 6) if values else None

    gain = round(rounds[-1]["val_mIoU"] - rounds[0]["val_mIoU"], 6)
    return {"final_val_mIoU": rounds[-1]["val_mIoU"], "gain_over_round_0": gain,
            "auc_bad_masks": mean(j["auc"] for j in judged),
            "bad_mask_share": mean(j["bad"] / len(j["oracle_iou_per_sample"]) for j in judged),
            "catch_precision": mean(j["catch"]["precision"] for j in judged),
            "catch_recall": mean(j["catch"]["recall"] for j in judged)}
