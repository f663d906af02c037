"""DVC stage `compose`: multi-object scenes from generated objects and scenes. Under
``compose.mode=thesaurus`` the thesaurus stage's table decides which objects join which scenes; the
placement and harmonization models are read when ``compose.placement`` / ``compose.harmonize`` use
them."""
from freemask.compose.scenes import compose_dataset, load_tools
from freemask.errors import DataError
from freemask.labels import from_profile
from freemask.runtime import run_stage, write_json
from freemask.thesaurus import allowed_labels, read_csv

THESAURUS = "data/thesaurus/thesaurus.csv"


def main(p):
    classes = list(from_profile(p.profile).classes)
    allowed = None
    if p.compose.mode == "thesaurus":
        try:
            allowed = allowed_labels(read_csv(THESAURUS), classes, p.thesaurus.threshold)
        except ValueError as err:
            raise DataError(THESAURUS, str(err), hint="re-run the `thesaurus` stage for the profile's classes") from None
    tools = load_tools(p.compose, classes, p.placement, "models/placement", "models/harmonizer", p.harmonize)
    summary = compose_dataset(p.compose, "data/generated/objects", "data/generated/scenes", "data/composed", tools, allowed)
    write_json("metrics/details/compose.json", summary)


if __name__ == "__main__":
    run_stage(main)
