"""DVC stage `train_placement`: the FOPA-style placement network on the toy world's renders (paper
§3.2.2), saved with the classes' placement statistics; its metrics are the val plausibility of each
placement mode (learned, prior, random) as the world's own prior judges it."""
from freemask.compose.train_placement import train_placement
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.placement.threads)
    summary = train_placement(p.placement, "models/placement", p.compose.min_size, p.compose.max_size)
    write_json("metrics/details/placement.json", summary)
    write_json("metrics/placement.json", {f"plausibility_{mode}": v["plausibility"] for mode, v in summary["val"].items()})


if __name__ == "__main__":
    run_stage(main)
