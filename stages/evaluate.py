"""DVC stage `evaluate`: mIoU and per-class IoU of both segmenters on the real toy val split, as
stored (JPEG, read through the VOC reader), as rendered (lossless), and on a val split of a world
rendered with another seed (``evaluate.fresh_world_seed``), stored as JPEG too."""
from freemask.data.arrays import from_voc
from freemask.data.voc import as_stored
from freemask.metrics.evaluation import evaluate_splits
from freemask.runtime import run_stage, set_threads, write_json
from freemask.segmenters.mask2former import load_segmenter
from freemask.world.build import JPEG_QUALITY, val_scenes
from freemask.world.spec import CLASSES


def main(p):
    set_threads(p.evaluate.threads)
    fresh_images, fresh_labels = val_scenes(p.world.model_copy(update={"seed": p.evaluate.fresh_world_seed}))
    splits = {
        "val": from_voc("data/world/voc", "val"),
        "val_raw": val_scenes(p.world),
        "fresh_world_val": (as_stored(fresh_images, JPEG_QUALITY), fresh_labels),
    }
    models = {w: load_segmenter(f"models/segmenter_{w}") for w in ("synthetic", "real")}
    headline, details = evaluate_splits(models, splits, ["background", *CLASSES], p.evaluate.batch_size)
    write_json("metrics/details/eval.json", details)
    write_json("metrics/eval.json", headline)


if __name__ == "__main__":
    run_stage(main)
