"""DVC stage `compose`: multi-object scenes from generated objects and scenes. Under
``compose.mode=thesaurus`` the thesaurus stage's table decides which objects join which scenes; the
placement and harmonization models are read when ``compose.placement`` / ``compose.harmonize`` use
them."""
from freemask.compose.dataset import compose_from_params
from freemask.runtime import run_stage, write_json


def main(p):
    summary = compose_from_params(p, "data/generated/objects", "data/generated/scenes", "data/composed",
                                  "data/thesaurus/thesaurus.csv", "models/placement", "models/harmonizer")
    write_json("metrics/details/compose.json", summary)


if __name__ == "__main__":
    run_stage(main)
