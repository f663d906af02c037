"""DVC stage `train_harmonizer`: the RAIN-style harmonization network, trained on toy pairs (the
same object rendered under the lighting of two backgrounds) at the world's resolution; its metric is
the held-out colour error with the network over that without harmonization (the rest in the details)."""
from freemask.compose.harmonize import train_harmonizer
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.harmonize.threads)
    summary = train_harmonizer(p.harmonize, "models/harmonizer", p.world.resolution)
    write_json("metrics/details/harmonizer.json", summary)
    write_json("metrics/harmonizer.json", {"val_ratio_rain_to_none": summary["val_ratio_rain_to_none"]})


if __name__ == "__main__":
    run_stage(main)
