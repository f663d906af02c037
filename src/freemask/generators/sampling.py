"""Sampling from a pixel-space text-to-image UNet with DDIM and classifier-free guidance."""
from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler

from .attention import AttentionStore, recording
from .toy import ToyGenerator


def initial_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """One noise tensor per sample from its own seed, so a sample does not depend on its batch."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def sample(gen: ToyGenerator, prompts: list[str], seeds: list[int], steps: int, guidance: float,
           store: AttentionStore | None = None, record_max_timestep: int | None = None,
           guidance_max_timestep: int | None = None, self_attention_steps: int | None = None) -> np.ndarray:
    """Generate one image per prompt; returns uint8 (B, R, R, 3). If ``store`` is given, the
    cross-attention of the conditional branch is recorded into it at every step whose timestep
    is at most ``record_max_timestep`` (every step if None); self-attention (when the store asks for
    it) at the last ``self_attention_steps`` of those steps only (all of them if None).

    Classifier-free guidance is applied at the steps whose timestep is at most
    ``guidance_max_timestep`` (all steps if None); above it the conditional prediction is used
    alone: guidance in a limited interval (Kynkaanniemi et al., 2024; why here:
    docs/decisions.md#generation)."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    unet = gen.unet
    n = len(prompts)
    cond = gen.encode(prompts)
    both = torch.cat([gen.encode([""] * n), cond]) if guidance > 1.0 else None
    sched = DDIMScheduler.from_config(gen.scheduler.config)
    sched.set_timesteps(steps)
    R = unet.config.sample_size
    x = initial_noise(seeds, (unet.config.in_channels, R, R))
    recorded = [int(t) for t in sched.timesteps if record_max_timestep is None or int(t) <= record_max_timestep]
    if store is not None and not recorded:
        raise ValueError(f"generate.max_timestep={record_max_timestep} is below every one of the {steps} sampling "
                         f"timesteps (smallest {int(sched.timesteps[-1])}); nothing would be recorded")
    self_recorded = set(recorded if self_attention_steps is None else recorded[-self_attention_steps:])

    def run() -> torch.Tensor:
        nonlocal x
        for t in sched.timesteps:
            guided = both is not None and (guidance_max_timestep is None or int(t) <= guidance_max_timestep)
            if store is not None:
                store.active = int(t) in recorded
                store.self_active = int(t) in self_recorded
                store.batch_slice = slice(n, 2 * n) if guided else None
            if guided:
                eu, ec = unet(torch.cat([x, x]), t, encoder_hidden_states=both).sample.chunk(2)
                out = eu + guidance * (ec - eu)
            else:
                out = unet(x, t, encoder_hidden_states=cond).sample
            x = sched.step(out, t, x).prev_sample
        return x

    if store is not None:
        with recording(unet, store):
            run()
    else:
        run()
    img = ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8)
    return img.permute(0, 2, 3, 1).numpy()
