"""Trains the toy text-to-image generator to a fixed step count, resumably.

Each step draws its batch, noise and timesteps from a generator seeded by (seed, step), and the
learning rate is constant after warm-up, so a run resumed from a checkpoint takes exactly the
steps an uninterrupted run takes -- also when ``steps`` was raised since: the checkpoint of the
finished run is kept, and a longer run continues from it instead of starting over.

The checkpoint (``state.pt``) holds tensors and plain containers only and is read with
``weights_only=True``. A checkpoint of other params or data is set aside (training starts afresh);
one that does not read (truncated, corrupt, or holding anything else) is an error naming it, not
treated as absent: checkpoints are written whole (``io.write_with``), so such a file was damaged
or written by something else, and deleting it is the user's call.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.shards import read_members
from ..errors import DataError
from ..io import load_torch, replace_dir, write_with
from ..params import TrainGenerator
from .toy import ToyGenerator, build_text_encoder, build_tokenizer, build_train_scheduler, build_unet


def load_training_set(directory: str | Path) -> tuple[torch.Tensor, list[str]]:
    """Images as uint8 (N, 3, R, R) and their captions, in shard order."""
    m = read_members([directory], ("image.png", "meta.json"), desc="generator: loading training set")
    images, captions = np.stack(m["image.png"]), [meta["caption"] for meta in m["meta.json"]]
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions


def build_generator(cfg: TrainGenerator, resolution: int) -> ToyGenerator:
    tok = build_tokenizer()
    te = build_text_encoder(len(tok.get_vocab()), cfg.text_hidden, cfg.text_layers)
    unet = build_unet(resolution, cfg.channels, cfg.text_hidden, cfg.attention_heads, cfg.attention_levels)
    return ToyGenerator(unet, te, tok, build_train_scheduler(cfg.prediction))


def training_fingerprint(cfg: TrainGenerator, n_images: int, resolution: int) -> str:
    """What a checkpoint must share with the run that resumes it: everything but the step count
    and the knobs that do not change the arithmetic."""
    kept = cfg.model_dump(exclude={"steps", "threads", "checkpoint_every"})
    return json.dumps(kept, sort_keys=True) + f"|{n_images}|{resolution}"


def _atomic_save(obj, path: Path) -> None:
    write_with(path, lambda tmp: torch.save(obj, tmp))


CHECKPOINT_KEYS = ("fingerprint", "step", "losses", "unet", "text_encoder", "ema_unet", "ema_text_encoder", "opt")


def read_checkpoint(path: Path) -> dict:
    """The resume checkpoint at ``path``, read without unpickling code; a DataError naming it if it
    does not read or lacks a key."""
    hint = "delete it to train from the start"
    state = load_torch(path, hint)
    missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise DataError(path, f"not a generator training checkpoint (no {', '.join(missing)})", hint)
    return state


def train_generator(cfg: TrainGenerator, data_dir: str | Path, out_dir: str | Path, work_dir: str | Path) -> dict:
    """Train and save the EMA weights to ``out_dir``; checkpoints go to ``work_dir`` for resuming."""
    torch.manual_seed(cfg.seed)
    images, captions = load_training_set(data_dir)
    resolution = images.shape[-1]
    gen = build_generator(cfg, resolution)
    ids_all = gen.token_ids(captions)
    empty_ids = gen.token_ids([""])[0]
    params = list(gen.unet.parameters()) + list(gen.text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ema_unet, ema_te = copy.deepcopy(gen.unet).requires_grad_(False), copy.deepcopy(gen.text_encoder).requires_grad_(False)
    ema_params = list(ema_unet.parameters()) + list(ema_te.parameters())
    sched = gen.scheduler

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "state.pt"
    fingerprint = training_fingerprint(cfg, len(images), resolution)
    step, losses = 0, []
    if ckpt.exists():
        state = read_checkpoint(ckpt)
        if state["fingerprint"] == fingerprint and state["step"] <= cfg.steps:
            gen.unet.load_state_dict(state["unet"])
            gen.text_encoder.load_state_dict(state["text_encoder"])
            ema_unet.load_state_dict(state["ema_unet"])
            ema_te.load_state_dict(state["ema_text_encoder"])
            opt.load_state_dict(state["opt"])
            step, losses = state["step"], state["losses"]
            print(f"generator: resuming at step {step}")
        else:
            why = "other params or data" if state["fingerprint"] != fingerprint else f"step {state['step']} > steps"
            print(f"generator: checkpoint is from {why}; starting afresh")

    gen.unet.train()
    gen.text_encoder.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="generator: training")
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=g)
        x0 = images[idx].float() / 127.5 - 1
        flip = torch.rand(cfg.batch_size, generator=g) < 0.5  # a horizontal flip keeps the caption true
        x0 = torch.where(flip[:, None, None, None], x0.flip(3), x0)
        ids = ids_all[idx].clone()
        ids[torch.rand(cfg.batch_size, generator=g) < cfg.cond_dropout] = empty_ids  # classifier-free guidance
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch_size,), generator=g)
        pred = gen.unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=gen.text_encoder(ids).last_hidden_state).sample
        target = noise if cfg.prediction == "epsilon" else sched.get_velocity(x0, noise, t)
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        opt.step()
        step += 1
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema_params, params):
                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        losses.append(round(loss.item(), 5))
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _atomic_save({"fingerprint": fingerprint, "step": step, "losses": losses, "unet": gen.unet.state_dict(),
                          "text_encoder": gen.text_encoder.state_dict(), "ema_unet": ema_unet.state_dict(),
                          "ema_text_encoder": ema_te.state_dict(), "opt": opt.state_dict()}, ckpt)
    bar.close()

    replace_dir(out_dir, ToyGenerator(ema_unet.eval(), ema_te.eval(), gen.tokenizer, sched).save)
    curve = [float(np.mean(losses[i:i + 100])) for i in range(0, len(losses), 100)]
    return {"steps": step, "final_loss": float(np.mean(losses[-200:])), "loss_per_100_steps": [round(c, 5) for c in curve],
            "params_unet": sum(p.numel() for p in ema_unet.parameters()),
            "params_text_encoder": sum(p.numel() for p in ema_te.parameters())}
