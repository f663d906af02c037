"""The paper's "S + R" rows (Table 2): the synthetic-trained segmenter fine-tuned on a small real
subset, against a segmenter trained on that subset alone with the same schedule."""
from __future__ import annotations

import numpy as np

from ..params import Finetune, ParamsError, Train

# run name -> the weights it starts from (None: a fresh model)
RUNS = {"synthetic_plus_real": "models/segmenter_synthetic", "real_subset": None}


def real_subset(images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of the real train split, drawn without replacement by ``seed``, in split order."""
    if n > len(images):
        raise ParamsError(f"finetune.real_images={n}: the real train split has only {len(images)} images")
    idx = np.sort(np.random.default_rng(seed).permutation(len(images))[:n])
    return images[idx], labels[idx]


def schedule(train: Train, ft: Finetune, from_scratch: bool) -> Train:
    """The segmenter params of a run: ``train``'s architecture and augmentation, ``finetune``'s
    steps, warm-up, evaluation interval and seed; the learning rate ``finetune.lr`` when it starts
    from trained weights, ``train.lr`` (the rate a fresh model trains at) when ``from_scratch``."""
    return train.model_copy(update={"steps": ft.steps, "lr": train.lr if from_scratch else ft.lr,
                                    "warmup_steps": ft.warmup_steps, "eval_every": ft.eval_every, "seed": ft.seed})
