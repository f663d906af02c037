"""DVC stage `world`: render the toy world (generator set, captions, real VOC splits, priors)."""
from freemask.runtime import run_stage
from freemask.world.build import build_world

if __name__ == "__main__":
    run_stage(lambda p: build_world(p.world, "data/world"))
