"""DVC stage `generate`: single-object images with attention masks, and empty scenes, from the
generator of ``generate.generator`` (the toy model or a Stable Diffusion checkpoint); under
``generate.backgrounds=thesaurus`` each class is prompted on the backgrounds the thesaurus stage's
table allows it."""
from freemask.errors import DataError
from freemask.generate.dataset import generate_dataset
from freemask.labels import from_profile, with_background_weights
from freemask.runtime import run_stage, set_threads
from freemask.thesaurus import background_weights, read_csv

THESAURUS = "data/thesaurus/thesaurus.csv"


def main(p):
    set_threads(p.generate.threads)
    labels = from_profile(p.profile)
    if p.generate.backgrounds == "thesaurus":
        try:
            weights = background_weights(read_csv(THESAURUS), list(labels.classes), list(labels.backgrounds),
                                         p.thesaurus.threshold)
        except (ValueError, KeyError) as err:
            raise DataError(THESAURUS, str(err), hint="re-run the `thesaurus` stage for the profile's classes") from None
        labels = with_background_weights(labels, weights)
    generate_dataset(p.generate, labels, "data/generated")


if __name__ == "__main__":
    run_stage(main)
