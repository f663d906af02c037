"""DVC stage `evaluate`: mIoU and per-class IoU of both segmenters on the real toy val split."""
from freemask.data.arrays import from_voc
from freemask.metrics.evaluation import evaluate_predictions
from freemask.runtime import run_stage, set_threads, write_json
from freemask.segmenters.mask2former import load_segmenter, predict
from freemask.world.spec import CLASSES

NAMES = ["background", *CLASSES]


def main(p):
    set_threads(p.evaluate.threads)
    images, labels = from_voc("data/world/voc", "val")
    res = {w: evaluate_predictions(predict(load_segmenter(f"models/segmenter_{w}"), images, p.evaluate.batch_size), labels, NAMES)
           for w in ("synthetic", "real")}
    syn, real = res["synthetic"]["mIoU"], res["real"]["mIoU"]
    write_json("metrics/eval.json", {
        "val_split": "data/world/voc ImageSets/Segmentation/val.txt",
        "synthetic_only": res["synthetic"], "upper_bound_real": res["real"],
        "synthetic_over_upper_bound": round(syn / real, 4) if real > 0 else None})


if __name__ == "__main__":
    run_stage(main)
