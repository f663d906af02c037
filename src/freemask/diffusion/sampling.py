"""The one denoise-and-record loop: text-to-image sampling with classifier-free guidance, for the
toy pixel-space model and Stable Diffusion alike (``freemask.diffusion.models.Generator``)."""
from __future__ import annotations

import numpy as np
import torch

from ..attention.recorder import AttentionStore, recording
from .models import SCHEDULERS, Generator


def initial_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """One noise tensor per sample from its own seed, so a sample does not depend on its batch."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def solver_options(name: str, config) -> dict:
    """What the sampler ``name`` sets on top of the generator's noise schedule ``config``.

    DDIM and Euler: nothing. ``DPMSolverMultistep``: DPM-Solver++ (Lu et al., 2022), the
    second-order multistep solver in data prediction, with a first-order last step down to sigma 0;
    timesteps spread from the last training timestep down ("trailing"), so the first step starts
    from the pure noise it is given at any step count; and, if the schedule clips the predicted
    sample to [-1, 1] (``clip_sample``, as the toy's pixel-space model does under DDIM), the same
    clip (diffusers' thresholding with ``sample_max_value`` 1 is exactly that clip)."""
    if name != "DPMSolverMultistep":
        return {}
    options = {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint",
               "lower_order_final": True, "final_sigmas_type": "zero", "timestep_spacing": "trailing"}
    if config.get("clip_sample", False):
        if float(config.get("clip_sample_range", 1.0)) != 1.0:
            raise ValueError(f"DPMSolverMultistep clips the predicted sample to [-1, 1] only; the generator's "
                             f"schedule clips to ±{config['clip_sample_range']}: use the DDIM sampler")
        options |= {"thresholding": True, "sample_max_value": 1.0}
    return options


def scheduler(gen: Generator, name: str, steps: int):
    """The sampler ``name`` (a key of ``SCHEDULERS``) configured from the generator's own noise
    schedule (plus ``solver_options``), with its ``steps`` timesteps set."""
    config = gen.scheduler.config
    sched = SCHEDULERS[name].from_config(config, **solver_options(name, config))
    sched.set_timesteps(steps, device=gen.unet.device)
    return sched


@torch.no_grad()
def sample(gen: Generator, prompts: list[str], seeds: list[int], steps: int, guidance: float,
           store: AttentionStore | None = None, record_max_timestep: int | None = None,
           guidance_max_timestep: int | None = None, self_attention_steps: int | None = None,
           sampler: str = "DDIM", height: int | None = None) -> np.ndarray:
    """Generate one image per prompt; returns uint8 (B, H, H, 3). If ``store`` is given, the
    attention of the conditional branch is recorded into it at every step whose timestep is at
    most ``record_max_timestep`` (every step if None); self-attention (when the store asks for it)
    at the last ``self_attention_steps`` of those steps only (all of them if None).

    Classifier-free guidance is applied at the steps whose timestep is at most
    ``guidance_max_timestep`` (all steps if None); above it the conditional prediction is used
    alone: guidance in a limited interval (Kynkaanniemi et al., 2024; why here:
    docs/decisions.md#generation). ``height``: the image side (None: the generator's own)."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    unet, n = gen.unet, len(prompts)
    cond = gen.encode(prompts)
    both = torch.cat([gen.encode([""] * n), cond]) if guidance > 1.0 else None
    sched = scheduler(gen, sampler, steps)
    side = gen.latent_side(height)
    x = initial_noise(seeds, (unet.config.in_channels, side, side)) * sched.init_noise_sigma
    x = x.to(unet.device, unet.dtype)
    recorded = [float(t) for t in sched.timesteps if record_max_timestep is None or float(t) <= record_max_timestep]
    if store is not None and not recorded:
        raise ValueError(f"generate.max_timestep={record_max_timestep} is below every one of the {steps} sampling "
                         f"timesteps (smallest {float(sched.timesteps[-1]):g}); nothing would be recorded")
    self_recorded = set(recorded if self_attention_steps is None else recorded[-self_attention_steps:])

    def run() -> torch.Tensor:
        nonlocal x
        for t in sched.timesteps:
            guided = both is not None and (guidance_max_timestep is None or float(t) <= guidance_max_timestep)
            if store is not None:
                store.active = float(t) in recorded
                store.self_active = float(t) in self_recorded
                store.batch_slice = slice(n, 2 * n) if guided else None
            if guided:
                inp = sched.scale_model_input(torch.cat([x, x]), t)
                eu, ec = unet(inp, t, encoder_hidden_states=both).sample.chunk(2)
                out = eu + guidance * (ec - eu)
            else:
                out = unet(sched.scale_model_input(x, t), t, encoder_hidden_states=cond).sample
            x = sched.step(out, t, x).prev_sample
        return x

    if store is not None:
        with recording(unet, store):
            run()
    else:
        run()
    return gen.decode(x)
