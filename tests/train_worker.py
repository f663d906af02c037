"""One process of a test's segmenter training, launched under torchrun (or plainly).

    train_worker.py CFG_JSON OUT_DIR REPORT_DIR

Trains on the coloured squares of test_mask2former (40 images, seed 0) on one torch thread and
writes the returned stats to ``REPORT_DIR/rank<R>.json`` (with, under ``"num_masks"``, the mask
count the loss normalises by when rank r holds r * 2 + 1 target masks), and the gradient of the first step, as the
optimiser sees it (after the all-reduce, before clipping), to ``REPORT_DIR/grads<R>.pt``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_mask2former import NUM_LABELS, squares  # noqa: E402

from freemask.distributed import process_group  # noqa: E402
from freemask.params import Train  # noqa: E402
from freemask.segmenters.mask2former import _count_masks_globally, train_segmenter  # noqa: E402


def capture_first_gradient(path: Path) -> None:
    """Save the gradients passed to the first ``clip_grad_norm_`` call (the training step clips
    right after averaging them over the ranks)."""
    real = torch.nn.utils.clip_grad_norm_

    def clip(parameters, *args, **kwargs):
        parameters = list(parameters)
        if not path.exists():
            torch.save([p.grad.clone() if p.grad is not None else None for p in parameters], path)
        return real(parameters, *args, **kwargs)

    torch.nn.utils.clip_grad_norm_ = clip


def main(cfg_json: str, out_dir: str, report_dir: str) -> None:
    torch.set_num_threads(1)
    cfg = Train.model_validate_json(Path(cfg_json).read_text())
    images, labels = squares(40)
    with process_group() as ranks:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        capture_first_gradient(Path(report_dir) / f"grads{ranks.rank}.pt")
        stats = train_segmenter(cfg, images, labels, NUM_LABELS, out_dir, progress=False, ranks=ranks)
        model = SimpleNamespace(criterion=SimpleNamespace())
        _count_masks_globally(model, ranks)
        mine = [torch.arange(2 * ranks.rank + 1)]  # one image's class labels
        stats["num_masks"] = float(model.criterion.get_num_masks(mine, torch.device("cpu")))
        (Path(report_dir) / f"rank{ranks.rank}.json").write_text(json.dumps(stats))


if __name__ == "__main__":
    main(*sys.argv[1:])
