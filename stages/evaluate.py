"""DVC stage `evaluate`: mIoU and per-class IoU of both segmenters on the profile's val split.

The toy world: its val split as stored (JPEG, read through the VOC reader), as rendered
(lossless), and the val split of a world rendered with another seed (``evaluate.fresh_world_seed``),
stored as JPEG too. A real profile: the val split of its dataset (``data``), in the layouts of the
paper's Tables 2-4 (``metrics.evaluation.paper_tables``). The toy world's details carry the Table 3
layout for ``evaluate.groups`` and the Table 4 layout when ``profile.unseen`` names classes."""
from freemask.data.profile import real_split
from freemask.data.voc import as_stored
from freemask.labels import from_profile
from freemask.metrics.evaluation import evaluate_profile, evaluate_splits, grouping_for
from freemask.runtime import run_stage, set_threads, write_json
from freemask.segmenters.mask2former import load_segmenter
from freemask.world.build import JPEG_QUALITY, val_scenes


def main(p):
    set_threads(p.evaluate.threads)
    names = list(from_profile(p.profile).names)
    toy = p.profile.name == "toy"
    splits = {"val": real_split(p, p.data.val_split)}
    if toy:
        fresh_images, fresh_labels = val_scenes(p.world.model_copy(update={"seed": p.evaluate.fresh_world_seed}))
        splits["val_raw"] = val_scenes(p.world)
        splits["fresh_world_val"] = (as_stored(fresh_images, JPEG_QUALITY), fresh_labels)
    models = {w: load_segmenter(f"models/segmenter_{w}") for w in ("synthetic", "real")}
    grouping = grouping_for(p.profile.name, p.evaluate.groups)
    if toy:
        headline, details = evaluate_splits(models, splits, names, p.evaluate.batch_size, grouping, p.profile.unseen)
    else:
        headline, details = evaluate_profile(models, *splits["val"], names, p.profile.unseen, p.evaluate.batch_size,
                                             grouping)
    write_json("metrics/details/eval.json", details)
    write_json("metrics/eval.json", headline)


if __name__ == "__main__":
    run_stage(main)
