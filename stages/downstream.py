"""DVC stage `downstream@<method>` (extras/dvc.yaml, opt-in): the synthetic-only val mIoU when
PaintSeg's or the Independence Prior's masks replace the attention masks of every generated object,
beside the segmenter trained on the attention masks (train_synthetic)."""
import sys

from freemask.assess.downstream import downstream
from freemask.assess.refiners import METHODS
from freemask.diffusion.models import load_generator
from freemask.runtime import run_stage, set_threads, write_json


def main(p):
    method = sys.argv[1] if len(sys.argv) > 1 else ""
    if method not in METHODS:
        raise KeyError(f"stages/downstream.py: first argument must be one of {', '.join(METHODS)}, got {method!r}")
    set_threads(p.train.threads)
    res = downstream(method, p, load_generator("models/generator"), f"data/refined/{method}",
                     f"models/segmenter_{method}", f"data/work/train_{method}", "models/segmenter_synthetic")
    write_json(f"metrics/details/downstream_{method}.json", res)
    write_json(f"metrics/downstream_{method}.json", {k: res[k] for k in ("val_mIoU", "attention_val_mIoU", "gain")})


if __name__ == "__main__":
    run_stage(main)
