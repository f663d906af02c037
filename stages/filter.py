"""DVC stage `filter`: adversarial active learning (paper §3.3, Algorithm 1) on the toy world, with
the filter judged directly (docs/active_learning.md). Round 0's model is train_synthetic's; each
round generates fresh samples, scores them with the current segmenter, keeps the top α and retrains.
Writes models/filter/round_XX, data/filter/fresh (every fresh sample with its score, its oracle IoU
and whether it was kept), metrics/filter.json, metrics/details/filter.json and the per-round plot
data metrics/details/filter_rounds.json."""
from freemask.active.report import headline, plot_rows
from freemask.active.toy import load_samples, run_toy, write_fresh
from freemask.data.arrays import from_voc
from freemask.generate.plan import plan_objects
from freemask.labels import toy_labels
from freemask.runtime import run_stage, set_threads, write_json

FRESH = "data/filter/fresh"


def main(p):
    set_threads(p.active.threads)
    fresh_rounds: list = []
    result, _ = run_toy(p.active, p.generate, p.train, "models/generator",
                        load_samples("data/generated/objects", "data/composed"), "models/filter",
                        val=from_voc("data/world/voc", "val"), used=plan_objects(p.generate, toy_labels()),
                        initial_model="models/segmenter_synthetic", oracle_model="models/segmenter_real",
                        fresh_out=fresh_rounds)
    write_fresh(fresh_rounds, result.rounds, FRESH, p.generate.shard_size)
    write_json("metrics/details/filter.json", {"retain": p.active.retain, "rounds": result.rounds,
                                               "kept": {f"round_{r:02d}": k for r, k in result.kept.items()}})
    write_json("metrics/details/filter_rounds.json", plot_rows(result.rounds))
    write_json("metrics/filter.json", headline(result.rounds))


if __name__ == "__main__":
    run_stage(main)
