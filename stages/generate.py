"""DVC stage `generate`: single-object images with attention masks, and empty scenes, from the
generator of ``generate.generator`` (the toy model or a Stable Diffusion checkpoint)."""
from freemask.generate.dataset import generate_dataset
from freemask.labels import from_profile
from freemask.runtime import run_stage, set_threads


def main(p):
    set_threads(p.generate.threads)
    generate_dataset(p.generate, from_profile(p.profile), "data/generated")


if __name__ == "__main__":
    run_stage(main)
