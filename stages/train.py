"""DVC stages `train_synthetic` / `train_real`: Mask2Former on the synthetic set or on the profile's
real train split (the toy world's by default; under a zero-shot profile, its seen classes only).

usage: python stages/train.py synthetic|real
       torchrun --nproc_per_node N stages/train.py synthetic|real   (data-parallel; rank 0 writes)

Checkpoints go to data/work/train_<which>/ (outside the DVC output): a killed run resumes there.
"""
import sys

from freemask.data.arrays import from_shards
from freemask.data.profile import real_split
from freemask.data.voc import as_stored
from freemask.distributed import process_group
from freemask.labels import from_profile
from freemask.runtime import run_stage, set_threads, write_json
from freemask.segmenters.mask2former import train_segmenter

HEADLINE = ("best_heldout_mIoU", "best_step", "final_loss")
WHICH = ("synthetic", "real")


def load(p, which: str) -> tuple:
    """The training images and labels; synthetic images stored as the target stores its own
    (``train.synthetic_jpeg_quality``)."""
    if which == "real":
        return real_split(p, p.data.train_split, seen_only=True)
    images, labels = from_shards("data/generated/objects", "data/composed", class_names=from_profile(p.profile).names)
    quality = p.train.synthetic_jpeg_quality
    return (as_stored(images, quality) if quality is not None else images), labels


def main(p):
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in WHICH:
        raise KeyError(f"stages/train.py: first argument must be one of {', '.join(WHICH)}, got {which!r}")
    set_threads(p.train.threads)
    images, labels = load(p, which)
    names = list(from_profile(p.profile).names)
    with process_group() as ranks:
        stats = train_segmenter(p.train, images, labels, len(names), f"models/segmenter_{which}",
                                class_names=names, work_dir=f"data/work/train_{which}", ranks=ranks)
        if ranks.is_main:
            write_json(f"metrics/details/train_{which}.json", stats)
            write_json(f"metrics/train_{which}.json", {k: stats[k] for k in HEADLINE})


if __name__ == "__main__":
    run_stage(main)
