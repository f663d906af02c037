"""DVC stage `filter`: adversarial active learning (paper §3.3, Algorithm 1) on the profile's
generator, with the filter judged directly (docs/active_learning.md). Round 0's model is
train_synthetic's; each round generates fresh samples as the `generate` stage does, scores them with
the current segmenter, keeps the top α and retrains; the val split of the profile's dataset measures
each round, and train_real's segmenter is the oracle that judges the filter. Writes
models/filter/round_XX, data/filter/fresh (every fresh sample with its score, its oracle IoU and
whether it was kept), metrics/filter.json, metrics/details/filter.json and the per-round plot data
metrics/details/filter_rounds.json."""
from freemask.active.report import headline, plot_rows
from freemask.active.rounds import load_samples, run_filter, write_fresh
from freemask.data.profile import real_split
from freemask.generate.plan import plan_objects
from freemask.runtime import run_stage, set_threads, write_json
from freemask.thesaurus import prompted_labels

FRESH = "data/filter/fresh"


def main(p):
    set_threads(p.active.threads)
    labels = prompted_labels(p)
    fresh_rounds: list = []
    result, _ = run_filter(p.active, p.generate, p.train, labels, p.generate.generator,
                           load_samples("data/generated/objects", "data/composed", names=labels.names),
                           "models/filter", val=real_split(p, p.data.val_split), used=plan_objects(p.generate, labels),
                           initial_model="models/segmenter_synthetic", oracle_model="models/segmenter_real",
                           fresh_out=fresh_rounds)
    write_fresh(fresh_rounds, result.rounds, FRESH, p.generate.shard_size, labels.names)
    write_json("metrics/details/filter.json", {"retain": p.active.retain, "rounds": result.rounds,
                                               "kept": {f"round_{r:02d}": k for r, k in result.kept.items()}})
    write_json("metrics/details/filter_rounds.json", plot_rows(result.rounds))
    write_json("metrics/filter.json", headline(result.rounds))


if __name__ == "__main__":
    run_stage(main)
