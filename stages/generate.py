"""DVC stage `generate`: single-object images with cross-attention masks, and empty scenes."""
from freemask.generators.dataset import generate_dataset
from freemask.runtime import run_stage, set_threads


def main(p):
    set_threads(p.generate.threads)
    generate_dataset(p.generate, "models/generator", "data/generated")


if __name__ == "__main__":
    run_stage(main)
