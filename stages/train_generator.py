"""DVC stage `train_generator`: train the toy text-to-image model to a fixed step count."""
from freemask.diffusion.train_toy import train_generator
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.train_generator.threads)
    stats = train_generator(p.train_generator, "data/world/generator_train", "models/generator", "data/work/train_generator")
    write_json("metrics/details/generator_training.json", stats)
    write_json("metrics/generator_training.json", {"final_loss": stats["final_loss"]})


if __name__ == "__main__":
    run_stage(main)
