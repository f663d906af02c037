"""DVC stage `assess`: is the generator good enough? Recognisability and attention-mask IoU."""
from freemask.generators.assess import assess_generator
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.assess.threads)
    write_json("metrics/generator_quality.json", assess_generator(
        p, "models/generator", "data/world/generator_train", "data/generated/objects", "models/segmenter_real",
        affinity_net_dir="models/affinity_net"))


if __name__ == "__main__":
    run_stage(main)
