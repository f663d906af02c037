"""DVC stage `train_placement`: the FOPA-style placement network (paper §3.2.2) on the toy world's
renders or on the generate stage's own images (``placement.source``), saved with the classes'
placement statistics; its metrics are the val plausibility of the learned and the random placement
modes, judged by the world's own prior in the toy world and by the harvested placements otherwise
(every mode's in the details)."""
from freemask.compose.train_placement import train_placement
from freemask.labels import from_profile
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.placement.threads)
    summary = train_placement(p.placement, "models/placement", p.compose.min_size, p.compose.max_size,
                              classes=from_profile(p.profile).classes,
                              generated=("data/generated/objects", "data/generated/scenes"))
    write_json("metrics/details/placement.json", summary)
    val = summary["val"] if "val" in summary else summary["val_support"]
    write_json("metrics/placement.json", {f"plausibility_{mode}": val[mode]["plausibility"] for mode in ("learned", "random")})


if __name__ == "__main__":
    run_stage(main)
