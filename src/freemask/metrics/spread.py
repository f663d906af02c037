"""Seed spread of the guarded metrics over repeated runs, and the regression check against a baseline.

A *run* is one commit of the pipeline's outputs: a baseline commit of the repository, or a DVC
experiment made from it (``dvc exp run --queue -S 'seed=range(1,5)'``; DVC keeps each experiment
as a commit under ``refs/exps/<baseline sha[:2]>/<baseline sha[2:]>/<name>``). Runs whose params
differ only in the replicate ``seed`` form a *group*; a group's spread is the mean and the sample
standard deviation of each guarded metric over its runs.

The *baseline* (``metrics/baseline.json``) holds, for every guarded metric, the mean, the sd and a
tolerance derived from the sd (for per-class IoU, the sd pooled over the classes when larger);
:func:`check` flags a run's metric that falls below mean − tolerance.
"""
from __future__ import annotations

import fnmatch
import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path


from ..io import read_json
from ..params import parse_yaml

# metrics file -> dotted keys (fnmatch patterns) that the spread covers and the check guards
GUARDED = {
    "metrics/eval.json": ["*"],
    "metrics/details/eval.json": ["val.synthetic.per_class.*", "val.upper_bound.per_class.*"],
    "metrics/generator_quality.json": ["*"],
}
# metrics files a run may lack (older commits), reported in the spread but never guarded by the baseline
REPORTED = {
    "metrics/filter.json": ["*"],
    "metrics/finetune.json": ["*"],
    "metrics/refiners.json": ["*"],
}
REPLICATE_KEY = "seed"
# metrics (fnmatch on "<file>:<dotted key>") whose sd is pooled with their family's: the metrics
# that share the file and the key up to its last component (the classes of one model on one split)
POOLED = ["*.per_class.*"]


class SpreadError(ValueError):
    """Missing or unreadable runs, metrics or baseline; the message names the file or revision."""


def flatten(d) -> dict[str, float]:
    """The finite numeric leaves of nested dicts as ``{"a.b.c": value}`` (None, booleans and strings left out)."""
    return {k: float(v) for k, v in flatten_params(d).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def guarded_metrics(read: Callable[[str], str | None], where: str) -> dict[str, float]:
    """``{"<file>:<dotted key>": value}`` for the keys of :data:`GUARDED` and of the :data:`REPORTED`
    files the run has; ``read(path)`` gives a file's text (None if absent). ``where`` names the run
    in errors."""
    out = {}
    for path, patterns in GUARDED.items():
        text = read(path)
        if text is None:
            raise SpreadError(f"{where}: {path} is missing (run the pipeline first)")
        try:
            values = flatten(json.loads(text))
        except json.JSONDecodeError as err:
            raise SpreadError(f"{where}: {path} is not valid JSON ({err})") from None
        out.update({f"{path}:{k}": v for k, v in values.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)})
    for path, patterns in REPORTED.items():
        text = read(path)
        try:
            values = {} if text is None else flatten(json.loads(text))
        except json.JSONDecodeError as err:
            raise SpreadError(f"{where}: {path} is not valid JSON ({err})") from None
        out.update({f"{path}:{k}": v for k, v in values.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)})
    return out


def workspace_metrics(root: str | Path = ".") -> dict[str, float]:
    """The guarded metrics of the outputs in a work tree."""
    root = Path(root)

    def read(path: str) -> str | None:
        f = root / path
        return f.read_text() if f.is_file() else None

    return guarded_metrics(read, str(root))


def _git(repo: Path, *args: str) -> str:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SpreadError(f"git {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def _read_at(repo: Path, rev: str) -> Callable[[str], str | None]:
    def read(path: str) -> str | None:
        res = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True, text=True)
        return res.stdout if res.returncode == 0 else None

    return read


def runs(repo: str | Path = ".", baseline_rev: str = "HEAD") -> list[dict]:
    """The baseline commit and every DVC experiment made from it, each as
    ``{"name", "rev", "base" (the baseline commit), "params" (flattened params.yaml), "metrics"}``, in
    name order after the baseline."""
    repo = Path(repo)
    sha = _git(repo, "rev-parse", "--verify", f"{baseline_rev}^{{commit}}").strip()
    refs = _git(repo, "for-each-ref", "--format=%(refname:lstrip=-1) %(objectname)", f"refs/exps/{sha[:2]}/{sha[2:]}/")
    found = [("baseline", sha)] + sorted(tuple(line.split(" ")) for line in refs.splitlines())
    out = []
    for name, rev in found:
        read = _read_at(repo, rev)
        params = read("params.yaml")
        if params is None:
            raise SpreadError(f"{name} ({rev[:7]}): no params.yaml")
        out.append({"name": name, "rev": rev, "base": sha, "params": flatten_params(parse_yaml(params) or {}),
                    "metrics": guarded_metrics(read, f"{name} ({rev[:7]})")})
    return out


def runs_of(repo: str | Path, revs: list[str]) -> list[dict]:
    """:func:`runs` of several commits, the first one's first: runs of the same params at two commits
    fall in one group (:func:`groups`). A run of a later commit is named ``<name>@<sha[:7]>``."""
    if not revs:
        raise SpreadError("no commit given")
    out, seen = runs(repo, revs[0]), set()
    seen.add(out[0]["rev"])
    for rev in revs[1:]:
        more = runs(repo, rev)
        if more[0]["rev"] in seen:
            raise SpreadError(f"{rev}: commit {more[0]['rev'][:7]} given twice")
        seen.add(more[0]["rev"])
        out += [{**r, "name": f"{r['name']}@{more[0]['rev'][:7]}"} for r in more]
    return out


def flatten_params(d, prefix: str = "") -> dict[str, object]:
    """Every leaf of nested dicts as ``{"a.b": value}`` (lists kept whole)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, object] = {}
    for k, v in d.items():
        out.update(flatten_params(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def stats(values: list[float]) -> dict:
    """Mean, sample sd (ddof 1; 0 for one value), n, min and max."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": round(mean, 4), "sd": round(sd, 4), "n": n, "min": round(min(values), 4), "max": round(max(values), 4)}


def groups(all_runs: list[dict]) -> list[dict]:
    """Runs grouped by their params less the replicate seed; each group with the params where it
    differs from the first run's, its seeds, run names, baseline commits and per-metric :func:`stats` (over
    the metrics every run of the group has). A seed a group already has (the same run at a later
    commit: ``runs_of``) is left out, and named under ``repeats_left_out``. The first run's group
    comes first."""
    ref = all_runs[0]["params"]
    by_key: dict[str, list[dict]] = {}
    repeats: dict[str, list[str]] = {}
    for r in all_runs:
        key = json.dumps({k: v for k, v in r["params"].items() if k != REPLICATE_KEY}, sort_keys=True, default=str)
        seed = r["params"].get(REPLICATE_KEY, 0)
        if any(m["params"].get(REPLICATE_KEY, 0) == seed for m in by_key.get(key, [])):
            repeats.setdefault(key, []).append(r["name"])  # the same run at a later commit: counted once
            continue
        by_key.setdefault(key, []).append(r)
    out = []
    for key, members in by_key.items():
        p = members[0]["params"]
        changed = {k: p.get(k) for k in sorted(set(p) | set(ref)) if k != REPLICATE_KEY and p.get(k) != ref.get(k)}
        keys = sorted(set.intersection(*(set(m["metrics"]) for m in members)))
        out.append({"params": changed, "seeds": [m["params"].get(REPLICATE_KEY, 0) for m in members],
                    "runs": [m["name"] for m in members], "revs": list(dict.fromkeys(m["base"] for m in members)),
                    "metrics": {k: stats([m["metrics"][k] for m in members]) for k in keys}})
        if key in repeats:
            out[-1]["repeats_left_out"] = repeats[key]
    return out


def keep_earlier(found: list[dict], rev: str, earlier: dict) -> list[dict]:
    """``found`` (the groups of the runs of commit ``rev``) followed by the groups of an ``earlier``
    spread file (``{"baseline_rev", "groups"}``) whose params no group of ``found`` has; every group
    records the commit it was measured at as ``rev``."""
    mine = [{**g, "rev": g.get("rev", rev)} for g in found]
    have = [g["params"] for g in mine]
    return mine + [{**g, "rev": g.get("rev", earlier["baseline_rev"])} for g in earlier["groups"]
                   if g["params"] not in have]


def family(metric: str) -> str:
    """The family of a metric: its file and dotted key up to the last component."""
    return metric.rsplit(".", 1)[0]


def pooled_sd(group: dict) -> dict[str, float]:
    """Per family of :data:`POOLED` metrics: the pooled sd, sqrt of the mean variance of its members."""
    var: dict[str, list[float]] = {}
    for m, s in group["metrics"].items():
        if any(fnmatch.fnmatchcase(m, p) for p in POOLED):
            var.setdefault(family(m), []).append(s["sd"] ** 2)
    return {f: math.sqrt(sum(v) / len(v)) for f, v in var.items()}


def baseline(group: dict, k: float, floor: float) -> dict:
    """Per metric: mean, sd, n and the tolerance max(k * sd', floor) that :func:`check` allows below
    the mean, where sd' is the metric's own sd, or for a :data:`POOLED` metric the larger of its own
    and its family's pooled sd (``pooled_sd`` in the entry)."""
    if len(group["runs"]) < 3:
        raise SpreadError(f"a baseline needs at least 3 seeds, the group has {len(group['runs'])} ({group['runs']})")
    pooled = pooled_sd(group)
    metrics = {}
    for m, s in group["metrics"].items():
        if m.split(":", 1)[0] in REPORTED:
            continue
        entry = {"mean": s["mean"], "sd": s["sd"], "n": s["n"]}
        sd = s["sd"]
        if family(m) in pooled:
            entry["pooled_sd"] = round(pooled[family(m)], 4)
            sd = max(sd, pooled[family(m)])
        entry["tolerance"] = round(max(k * sd, floor), 4)
        metrics[m] = entry
    return {"rule": {"k": k, "floor": floor, "pooled": POOLED, "runs": group["runs"], "seeds": group["seeds"]},
            "metrics": metrics}


def check(current: dict[str, float], base: dict) -> list[dict]:
    """The guarded metrics that dropped: value < mean − tolerance, or missing from ``current``."""
    bad = []
    for m, b in sorted(base["metrics"].items()):
        v = current.get(m)
        if v is None or v < b["mean"] - b["tolerance"]:
            bad.append({"metric": m, "value": v, "mean": b["mean"], "sd": b["sd"], "tolerance": b["tolerance"]})
    return bad


def load_baseline(path: str | Path) -> dict:
    """The baseline :func:`baseline` wrote; a missing or malformed file is a SpreadError, a file
    that is not JSON a DataError (``io.read_json``), each naming it."""
    path = Path(path)
    if not path.is_file():
        raise SpreadError(f"{path}: no baseline (write one with `freemask spread --baseline {path}`)")
    base = read_json(path, "write it again with `freemask spread --baseline`")
    if not isinstance(base, dict) or not isinstance(base.get("metrics"), dict):
        raise SpreadError(f"{path}: expected a 'metrics' mapping (written by `freemask spread --baseline`)")
    return base
