"""Adversarial active learning (paper §3.3, Algorithm 1) on the toy world -- opt-in, NOT a stage of
the default dvc.yaml (T rounds of generation and training would make `dvc repro` too long on a
laptop); docs/active_learning.md gives the stage definition to add for a DVC experiment.

usage: python stages/active_learning.py             run the rounds (params: active, generate, train)
       python stages/active_learning.py sweep A...  one run per retention α = A..., in this process,
                                                     then the sweep report
       python stages/active_learning.py sweep-report RUN.json...
                                                     table + curve of a retention sweep
Reads models/generator, data/generated/objects + data/composed (D0, as train_synthetic),
models/segmenter_synthetic (round 0's model: train_synthetic trained it on D0) and the toy VOC val
split; keeps each round's fresh samples in $FREEMASK_ACTIVE_CACHE (default data/work/active_fresh;
the samples of a round do not depend on active.retain, so a retention sweep makes them once); writes
models/active/round_XX, data/active/pool (shards) + kept.json, metrics/active_learning.json,
reports/active_learning.md and reports/active_learning.png; a sweep writes
metrics/active_learning_sweep/retain-A.json and reports/active_learning_sweep.{md,png}.
"""
import json
import os
import sys
from pathlib import Path

from freemask.active.report import plot_curves, rounds_table, sweep_table
from freemask.active.toy import load_samples, run_toy, write_pool
from freemask.data.arrays import from_voc
from freemask.generate.plan import plan_objects
from freemask.labels import toy_labels
from freemask.io import write_text
from freemask.params import Active, ParamsError
from freemask.runtime import run_stage, set_threads, write_json

SWEEP_DIR = Path("metrics/active_learning_sweep")


def load_inputs():
    """D0 (as train_synthetic reads it) and the toy VOC val split: the same for every run of a sweep."""
    return load_samples("data/generated/objects", "data/composed"), from_voc("data/world/voc", "val")


def run_rounds(p, initial, val) -> dict:
    """Algorithm 1 with the params ``p`` from D0 ``initial``, scored on ``val``; the pool and models go
    to data/active and models/active. Returns the run's metrics (every round)."""
    set_threads(p.active.threads)
    result, _ = run_toy(p.active, p.generate, p.train, "models/generator", initial, "models/active",
                        val=val, used=plan_objects(p.generate, toy_labels()), initial_model="models/segmenter_synthetic",
                        cache_dir=os.environ.get("FREEMASK_ACTIVE_CACHE", "data/work/active_fresh"))
    write_pool(result.pool, "data/active/pool", p.generate.shard_size)
    write_json("data/active/kept.json", {f"round_{r:02d}": keys for r, keys in result.kept.items()})
    return {"retain": p.active.retain, "finetune": p.active.finetune, "rounds": result.rounds,
            "final_val_mIoU": result.rounds[-1]["val_mIoU"]}


def main(p):
    run = run_rounds(p, *load_inputs())
    write_json("metrics/active_learning.json", run)
    write_text("reports/active_learning.md", "# Adversarial active learning (Algorithm 1)\n\n"
               f"retain α = {p.active.retain}, finetune = {p.active.finetune}, "
               f"{p.active.per_class} fresh samples per class per round\n\n" + rounds_table(run["rounds"]))
    plot_curves({f"α = {p.active.retain}": run["rounds"]}, "reports/active_learning.png")


def sweep(alphas: list[str]):
    """The stage function of a retention sweep over ``alphas`` (the other params from params.yaml)."""
    def run(p):
        runs = []
        for a in alphas:  # every value checked before the first run starts
            try:
                runs.append(Active.model_validate({**p.active.model_dump(), "retain": float(a)}))
            except ValueError:
                raise ParamsError(f"sweep: active.retain={a!r} is not a retention share in (0, 1]") from None
        paths = [SWEEP_DIR / f"retain-{active.retain}.json" for active in runs]
        if len(set(paths)) != len(paths):
            raise ParamsError(f"sweep: a retention value is given twice ({' '.join(alphas)})")
        inputs = load_inputs()
        for active, path in zip(runs, paths):
            write_json(path, run_rounds(p.model_copy(update={"active": active}), *inputs))
        sweep_report([str(f) for f in paths])
    return run


def sweep_report(paths: list[str]) -> None:
    runs = [json.loads(Path(f).read_text()) for f in paths]
    alphas = [r["retain"] for r in runs]
    if len(set(alphas)) != len(alphas):
        raise KeyError(f"sweep-report: two runs share a retain value ({sorted(alphas)}); one run per α")
    sweep = {r["retain"]: r["rounds"] for r in runs}
    write_text("reports/active_learning_sweep.md", "# Retention sweep (Figure 9)\n\n" + sweep_table(sweep))
    plot_curves({f"{a:.2f}": rs for a, rs in sorted(sweep.items())}, "reports/active_learning_sweep.png", sweep=True)
    print(sweep_table(sweep))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sweep-report":
        sweep_report(sys.argv[2:]) if sys.argv[2:] else sys.exit("usage: stages/active_learning.py sweep-report RUN.json...")
    elif len(sys.argv) > 1 and sys.argv[1] == "sweep":
        run_stage(sweep(sys.argv[2:])) if sys.argv[2:] else sys.exit("usage: stages/active_learning.py sweep A...")
    elif len(sys.argv) > 1:
        sys.exit(f"stages/active_learning.py: unknown argument {sys.argv[1]!r} (none, sweep or sweep-report)")
    else:
        run_stage(main)
