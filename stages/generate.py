"""DVC stage `generate`: single-object images with attention masks, and empty scenes, from the
generator of ``generate.generator`` (the toy model or a Stable Diffusion checkpoint); under
``generate.backgrounds=thesaurus`` each class is prompted on the backgrounds the thesaurus stage's
table allows it."""
from freemask.generate.dataset import generate_dataset
from freemask.runtime import run_stage, set_threads
from freemask.thesaurus import prompted_labels


def main(p):
    set_threads(p.generate.threads)
    generate_dataset(p.generate, prompted_labels(p), "data/generated")


if __name__ == "__main__":
    run_stage(main)
