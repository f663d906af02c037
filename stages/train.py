"""DVC stages `train_synthetic` / `train_real`: Mask2Former on the synthetic set or the real toy train split.

usage: python stages/train.py synthetic|real
       torchrun --nproc_per_node N stages/train.py synthetic|real   (data-parallel; rank 0 writes)

Checkpoints go to data/work/train_<which>/ (outside the DVC output): a killed run resumes there.
"""
import sys

from freemask.distributed import process_group
from freemask.data.arrays import from_shards, from_voc
from freemask.data.voc import as_stored
from freemask.runtime import run_stage, set_threads, write_json
from freemask.segmenters.mask2former import train_segmenter
from freemask.world.spec import CLASSES

HEADLINE = ("best_heldout_mIoU", "best_step", "final_loss")
SOURCES = {
    "synthetic": lambda: from_shards("data/generated/objects", "data/composed"),
    "real": lambda: from_voc("data/world/voc", "train"),
}


def load(which: str, quality: int | None) -> tuple:
    """The training images and labels; synthetic images stored as the target stores its own
    (``train.synthetic_jpeg_quality``)."""
    images, labels = SOURCES[which]()
    if which == "synthetic" and quality is not None:
        images = as_stored(images, quality)
    return images, labels


def main(p):
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in SOURCES:
        raise KeyError(f"stages/train.py: first argument must be one of {', '.join(SOURCES)}, got {which!r}")
    set_threads(p.train.threads)
    images, labels = load(which, p.train.synthetic_jpeg_quality)
    with process_group() as ranks:
        stats = train_segmenter(p.train, images, labels, len(CLASSES) + 1, f"models/segmenter_{which}",
                                class_names=["background", *CLASSES], work_dir=f"data/work/train_{which}", ranks=ranks)
        if ranks.is_main:
            write_json(f"metrics/details/train_{which}.json", stats)
            write_json(f"metrics/train_{which}.json", {k: stats[k] for k in HEADLINE})


if __name__ == "__main__":
    run_stage(main)
