"""DVC stage `compose`: multi-object scenes from generated objects and scenes; under
``compose.mode=thesaurus`` the thesaurus stage's table decides which objects join which scenes."""
from freemask.compose.paste import compose_dataset
from freemask.errors import DataError
from freemask.labels import from_profile
from freemask.runtime import run_stage
from freemask.thesaurus import allowed_labels, read_csv

THESAURUS = "data/thesaurus/thesaurus.csv"


def main(p):
    allowed = None
    if p.compose.mode == "thesaurus":
        try:
            allowed = allowed_labels(read_csv(THESAURUS), list(from_profile(p.profile).classes), p.thesaurus.threshold)
        except ValueError as err:
            raise DataError(THESAURUS, str(err), hint="re-run the `thesaurus` stage for the profile's classes") from None
    compose_dataset(p.compose, "data/generated/objects", "data/generated/scenes", "data/composed", allowed)


if __name__ == "__main__":
    run_stage(main)
