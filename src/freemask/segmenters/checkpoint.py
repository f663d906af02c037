"""Resumable segmenter training: everything a run needs to continue exactly where it stopped.

A checkpoint is a folder (written whole or not at all, via :func:`freemask.io.replace_dir`):
``model.safetensors`` (current weights), ``best.safetensors`` (the best held-out weights so far,
absent before the first evaluation), ``optimizer.pt`` (AdamW moments and step counts) and
``state.json`` (fingerprint, step, loss history, held-out history, best-so-far record). The
learning rate is a function of the step and every random draw is seeded by (seed, step), so
nothing else is needed to resume to the same final weights as an uninterrupted run.

Every file is read without unpickling code (safetensors, JSON, ``optimizer.pt`` with
``weights_only=True``). A checkpoint of other params or data is set aside; one whose files do not
read is an error naming the file, not treated as absent: the folder is written whole, so such a
file was damaged since, and deleting the folder is the user's call.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..errors import DataError
from ..io import load_safetensors, load_torch, read_json, replace_dir, write_json
from ..params import Train

# Train keys that do not change the arithmetic of a run: a checkpoint stays valid when they change.
NOT_IN_RESULTS = frozenset({"threads", "checkpoint_every"})


def training_fingerprint(cfg: Train, images: np.ndarray, labels: np.ndarray, num_labels: int,
                         class_names: list[str], world_size: int, init_from: str | Path | None = None) -> str:
    """What a checkpoint must share with the run that resumes it: the params that affect results
    (``steps`` included: it sets the LR decay), the data, the classes and the number of processes
    (several ranks sum gradients in another order and draw the loss's sample points per slice), and
    the weights a fine-tuning run starts from."""
    data = hashlib.sha256()
    for a in (images, labels):
        data.update(f"{a.dtype}{a.shape}".encode())
        data.update(np.ascontiguousarray(a).tobytes())
    kept = cfg.model_dump(exclude=set(NOT_IN_RESULTS))
    if cfg.backbone_weights is not None:  # the file's content, not just its name
        kept["backbone_weights"] = [cfg.backbone_weights, _file_digest(Path(cfg.backbone_weights))]
    out = {"params": kept, "data": data.hexdigest(), "num_labels": num_labels,
           "class_names": class_names, "world_size": world_size}
    if init_from is not None:
        out["init_from"] = _file_digest(Path(init_from) / "model.safetensors")
    return json.dumps(out, sort_keys=True)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Progress:
    """The part of a run's state that is not tensors."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"mIoU": -1.0, "step": 0})


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share memory, and a view would pin the whole storage
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_checkpoint(path: str | Path, fingerprint: str, progress: Progress, model_state: dict,
                    best_state: dict | None, optimizer) -> None:
    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        save_file(_tensors(model_state), str(tmp / "model.safetensors"))
        if best_state is not None:
            save_file(_tensors(best_state), str(tmp / "best.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"fingerprint": fingerprint, "step": progress.step, "losses": progress.losses,
                                        "history": progress.history, "best": progress.best})

    replace_dir(path, write)


def load_checkpoint(path: str | Path, fingerprint: str, total_steps: int, model, optimizer,
                    log=print) -> tuple[Progress, dict | None] | None:
    """Restore ``model`` and ``optimizer`` from ``path`` and return (progress, best weights), or
    None when there is no checkpoint or it belongs to another run (then it is left to be overwritten)."""
    path = Path(path)
    if not (path / "state.json").is_file():
        return None
    hint = f"delete {path} to train from the start"
    state = read_json(path / "state.json", hint)
    missing = [k for k in ("fingerprint", "step", "losses", "history", "best") if k not in state] \
        if isinstance(state, dict) else ["fingerprint"]
    if missing:
        raise DataError(path / "state.json", f"not a training checkpoint's state (no {', '.join(missing)})", hint)
    if state["fingerprint"] != fingerprint:
        log(f"train: checkpoint {path} is from other train params or data; discarding it and starting afresh")
        return None
    if state["step"] > total_steps:
        log(f"train: checkpoint {path} is at step {state['step']} > train.steps={total_steps}; starting afresh")
        return None
    model.load_state_dict(load_safetensors(path / "model.safetensors", hint))
    optimizer.load_state_dict(load_torch(path / "optimizer.pt", hint))
    best_file = path / "best.safetensors"
    best_state = load_safetensors(best_file, hint) if best_file.is_file() else None
    log(f"train: resuming from {path} at step {state['step']}")
    return Progress(state["step"], state["losses"], state["history"], state["best"]), best_state
