"""Table 5: the image-editing ablations, each a set of params overrides of the baseline commit, read
back from the seed-spread groups (``freemask spread``) and laid out against the full pipeline."""
from __future__ import annotations

import shlex

FULL = {"compose.mode": "thesaurus", "compose.placement": "learned", "compose.harmonize": "rain",
        "compose.max_overlap": 0.3, "compose.min_visible": 0.2}

# row name -> the params that differ from the baseline commit's (its own row: no overrides)
TABLE5 = {
    "full editing": FULL,
    "w/o thesaurus (any object into any scene)": {**FULL, "compose.mode": "random"},
    "placement: prior": {**FULL, "compose.placement": "prior"},
    "placement: random": {**FULL, "compose.placement": "random"},
    "harmonization: statistics": {**FULL, "compose.harmonize": "statistics"},
    "harmonization: none": {**FULL, "compose.harmonize": "none"},
    "thesaurus only (random placement, no harmonization, nothing dropped)": {"compose.mode": "thesaurus"},
    "baseline (defaults: by background, random placement, no harmonization)": {},
}

# the paper's mask-rule comparisons (the default rule, affinity, is the baseline commit's own run)
RULES = {f"mask rule: {rule}": {"generate.threshold.rule": rule}
         for rule in ("fixed", "otsu", "diffumask", "dataset_diffusion")}
# Figure 9 (the default retention, 0.7, is the baseline commit's own run)
RETENTION = {f"retain α = {a}": {"active.retain": a} for a in (0.5, 0.6, 0.8, 0.9, 1.0)}
SWEEPS = {"table5": TABLE5, "rules": RULES, "retention": RETENTION}

MIOU = "metrics/eval.json:val.synthetic_mIoU"
BALLOON = "metrics/details/eval.json:val.synthetic.per_class.balloon"


def queue_args(sweep: str = "table5", seeds: tuple[int, int] = (0, 3)) -> list[list[str]]:
    """The ``dvc exp run --queue`` argv of each row of :data:`SWEEPS` ``[sweep]`` but the baseline's,
    over the seeds ``range(*seeds)``."""
    if sweep not in SWEEPS:
        raise KeyError(f"no sweep {sweep!r}: one of {', '.join(SWEEPS)}")
    seed = f"seed=range({seeds[0]},{seeds[1]})"
    return [["dvc", "exp", "run", "--queue", *(a for k, v in row.items() for a in ("-S", f"{k}={v}")), "-S", seed]
            for row in SWEEPS[sweep].values() if row]


def queue_commands(sweep: str = "table5", seeds: tuple[int, int] = (0, 3)) -> list[str]:
    """:func:`queue_args` as shell commands."""
    return [shlex.join(args) for args in queue_args(sweep, seeds)]


def _row_group(groups: list[dict], overrides: dict) -> dict | None:
    """The group whose params differ from the baseline commit's exactly by ``overrides``, less the
    overrides that set a key to its default (the spread lists only the params that differ)."""
    from ..metrics.spread import flatten_params
    from ..params import dump_defaults

    defaults = flatten_params(dump_defaults())
    wanted = {k: v for k, v in overrides.items() if defaults.get(k) != v}
    for g in groups:
        if g["params"] == wanted:
            return g
    return None


def _cell(s: dict | None) -> str:
    return "–" if s is None else f"{100 * s['mean']:.1f} ± {100 * s['sd']:.1f}"


def table5(groups: list[dict]) -> str:
    """Markdown: a row per :data:`TABLE5` entry found among ``groups``, with its seeds, the val
    synthetic-only mIoU and balloon IoU (%, mean ± sd), the commit it was measured at (where the group
    records one: ``freemask spread --keep``; several when its runs come from several
    commits, ``freemask spread --rev A --rev B``), and the mIoU difference to the full row. A
    difference counts as an effect only above twice the larger sd of the two rows; with a single
    seed on either side there is no spread to judge it by."""
    found = {name: _row_group(groups, o) for name, o in TABLE5.items()}
    full = found["full editing"]
    lines = ["| setting | seeds | commit | val mIoU | balloon IoU | Δ mIoU vs full | beyond 2 sd |",
             "|---|---|---|---|---|---|---|"]
    for name, g in found.items():
        if g is None:
            lines.append(f"| {name} | not run | – | – | – | – | – |")
            continue
        m, b = g["metrics"].get(MIOU), g["metrics"].get(BALLOON)
        delta = judged = "–"
        if full is not None and g is not full and m is not None:
            f = full["metrics"][MIOU]
            d = m["mean"] - f["mean"]
            delta = f"{100 * d:+.1f}"
            if min(m["n"], f["n"]) < 2:
                judged = "n/a (one seed)"
            else:
                judged = "yes" if abs(d) > 2 * max(m["sd"], f["sd"]) else "no"
        revs = list(dict.fromkeys(r[:7] for r in g.get("revs", []))) or [g.get("rev", "")[:7]]
        seeds, rev = ", ".join(str(s) for s in g["seeds"]), " + ".join(r for r in revs if r) or "–"
        lines.append(f"| {name} | {seeds} | {rev} | {_cell(m)} | {_cell(b)} | {delta} | {judged} |")
    return "\n".join(lines) + "\n"
