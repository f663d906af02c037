"""DVC stage `train_placement`: the FOPA-style placement network on the toy world's renders (paper
§3.2.2), saved with the classes' placement statistics; its metrics are the val plausibility of the
learned and the random placement modes as the world's own prior judges them (every mode's in the
details)."""
from freemask.compose.train_placement import train_placement
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.placement.threads)
    summary = train_placement(p.placement, "models/placement", p.compose.min_size, p.compose.max_size)
    write_json("metrics/details/placement.json", summary)
    write_json("metrics/placement.json", {f"plausibility_{mode}": summary["val"][mode]["plausibility"]
                                          for mode in ("learned", "random")})


if __name__ == "__main__":
    run_stage(main)
