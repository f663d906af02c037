"""DVC stage `finetune`: the "S + R" rows of the paper's Table 2. The synthetic-trained segmenter
fine-tuned on ``finetune.real_images`` real train images (at ``finetune.lr``), and a fresh segmenter
trained on the same images alone for as many steps (at ``train.lr``); both scored on the val split
like `evaluate` scores the others.

Checkpoints go to data/work/finetune_<run>/ (outside the DVC output): a killed run resumes there."""
from freemask.data.profile import real_split
from freemask.labels import from_profile
from freemask.metrics.evaluation import evaluate_predictions, grouping_for
from freemask.runtime import run_stage, set_threads, write_json
from freemask.segmenters.finetune import RUNS, real_subset, schedule
from freemask.segmenters.mask2former import load_segmenter, predict, train_segmenter


def main(p):
    set_threads(p.finetune.threads)
    names = list(from_profile(p.profile).names)
    images, labels = real_subset(*real_split(p, p.data.train_split, seen_only=True), p.finetune.real_images,
                                 p.finetune.seed)
    val_images, val_labels = real_split(p, p.data.val_split)
    grouping = grouping_for(p.profile.name, p.evaluate.groups)
    headline, details = {"real_images": len(images)}, {}
    for run, init in RUNS.items():
        out = f"models/finetune_{run}"
        cfg = schedule(p.train, p.finetune, from_scratch=init is None)
        stats = train_segmenter(cfg, images, labels, len(names), out, class_names=names, init_from=init,
                                work_dir=f"data/work/finetune_{run}")
        pred = predict(load_segmenter(out), val_images, p.finetune.batch_size)
        details[run] = {**evaluate_predictions(pred, val_labels, names, grouping, p.profile.unseen),
                        "best_step": stats["best_step"], "heldout_history": stats["heldout_history"]}
        headline[f"{run}_mIoU"] = details[run]["mIoU"]
    write_json("metrics/details/finetune.json", {"val": details, "real_images": len(images)})
    write_json("metrics/finetune.json", headline)


if __name__ == "__main__":
    run_stage(main)
