"""The report's figures (PNG, drawn with matplotlib's Agg backend: no display, no network)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import write_with  # noqa: E402

ROLES = {"synthetic": "synthetic only", "upper_bound": "upper bound (real train)"}


def _save(fig, path: str | Path) -> None:
    # no timestamp or version in the PNG metadata: equal figures give equal bytes
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
    plt.close(fig)


def per_class_iou(details: dict, spread_group: dict, classes: list[str], path: str | Path) -> None:
    """Bars: each segmenter's IoU per class on the JPEG val, the mean over the spread's runs with
    ± sd whiskers, and this run's value as a dot."""
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for j, (role, name) in enumerate(ROLES.items()):
        keys = [f"metrics/details/eval.json:val.{role}.per_class.{c}" for c in classes]
        stats = [spread_group["metrics"].get(k) for k in keys]
        mean = [s["mean"] if s else np.nan for s in stats]
        sd = [s["sd"] if s else 0.0 for s in stats]
        off = (j - 0.5) * 0.38
        ax.bar(x + off, mean, 0.38, yerr=sd, capsize=2, label=f"{name}, mean ± sd (n={len(spread_group['runs'])})")
        this = [details["val"][role]["per_class"].get(c) for c in classes]
        ax.plot(x + off, [np.nan if v is None else v for v in this], "k.", ms=4)
    ax.plot([], [], "k.", label="this run")
    ax.set_xticks(x, classes, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU on toy val (JPEG)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    _save(fig, path)


def training_curves(histories: dict[str, list[dict]], path: str | Path) -> None:
    """Held-out mIoU and training loss against the step, one line per segmenter."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, hist in histories.items():
        steps = [h["step"] for h in hist]
        a.plot(steps, [h["mIoU"] for h in hist], label=name)
        b.plot(steps, [h["loss"] for h in hist], label=name)
    a.set_xlabel("step")
    a.set_ylabel("held-out mIoU")
    b.set_xlabel("step")
    b.set_ylabel("training loss")
    b.set_yscale("log")
    a.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
