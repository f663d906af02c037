"""DVC stage `compose`: multi-object scenes from generated objects and scenes."""
from freemask.compose.paste import compose_dataset
from freemask.runtime import run_stage

if __name__ == "__main__":
    run_stage(lambda p: compose_dataset(p.compose, "data/generated/objects", "data/generated/scenes", "data/composed"))
