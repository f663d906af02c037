"""DVC stage `train_harmonizer`: the RAIN-style harmonization network, trained on toy pairs (the
same object rendered under the lighting of two backgrounds) at the world's resolution."""
from freemask.compose.harmonize import train_harmonizer
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    set_threads(p.harmonize.threads)
    write_json("metrics/harmonizer.json", train_harmonizer(p.harmonize, "models/harmonizer", p.world.resolution))


if __name__ == "__main__":
    run_stage(main)
