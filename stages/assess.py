"""DVC stage `assess`: is the generator good enough? Recognisability and attention-mask IoU."""
from freemask.assess.generator import assess_generator
from freemask.runtime import run_stage, set_threads, write_json

HEADLINE = {"classifier_accuracy": "classifier_accuracy_on_generated",
            "mask_iou_vs_oracle": "attention_iou_vs_oracle_on_generated",
            "mask_iou_vs_truth": "attention_iou_vs_truth_on_noised_renders",
            "best_fixed_threshold_iou_vs_oracle": "best_fixed_threshold_vs_oracle_on_generated"}


def main(p):
    set_threads(p.assess.threads)
    q = assess_generator(p, "models/generator", "data/world/generator_train", "data/generated/objects",
                         "models/segmenter_real", affinity_net_dir="models/affinity_net")
    write_json("metrics/details/generator_quality.json", q)
    write_json("metrics/generator_quality.json", {name: q[key]["mean"] for name, key in HEADLINE.items()})


if __name__ == "__main__":
    run_stage(main)
