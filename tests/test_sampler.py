"""The samplers `generate.sampler` selects: each samples, records attention in its window, and the
multistep solver's configuration leaves DDIM as it was."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from freemask.attention.recorder import AttentionStore, layer_resolutions
from freemask.diffusion import sampling
from freemask.diffusion.models import SCHEDULERS

PROMPTS = ["a photo of a car on the road", "a photo of a bird in the sky"]


def _sample_and_watch(gen, monkeypatch, sampler: str, steps: int = 10):
    """Sample with attention recorded at t <= 200 (self-attention at the last recorded step); return
    the images, the store, the denoised samples before decoding and, per UNet call, (timestep,
    cross-attention recorded, self-attention recorded)."""
    calls, denoised = [], []
    store = AttentionStore(torch.tensor([[5], [5]]), self_attention_resolution=16)
    hook = gen.unet.register_forward_pre_hook(
        lambda module, args: calls.append((float(args[1]), store.active, store.self_active)))
    decode = gen.decode
    monkeypatch.setattr(gen, "decode", lambda x: (denoised.append(x.clone()), decode(x))[1])
    try:
        images = sampling.sample(gen, PROMPTS, [3, 4], steps=steps, guidance=2.0, store=store,
                                 record_max_timestep=200, guidance_max_timestep=400, self_attention_steps=1,
                                 sampler=sampler)
    finally:
        hook.remove()
    return images, store, denoised[0], calls


@pytest.mark.parametrize("sampler", sorted(SCHEDULERS))
def test_every_sampler_samples_and_records_its_window(tiny_generator, monkeypatch, sampler):
    images, store, denoised, calls = _sample_and_watch(tiny_generator, monkeypatch, sampler)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert torch.isfinite(denoised).all()
    timesteps = [t for t, _, _ in calls]
    assert timesteps == [float(t) for t in sampling.scheduler(tiny_generator, sampler, 10).timesteps]
    window = [t for t in timesteps if t <= 200]
    assert window and [t for t, active, _ in calls if active] == window
    assert [t for t, active, self_active in calls if active and self_active] == window[-1:]
    assert all(c == len(window) for c in store.counts.values())
    n_self = sum(1 for n, r in layer_resolutions(tiny_generator.unet).items() if ".attn1." in n and r == 16)
    assert store.self_count == n_self


def test_dpm_solver_is_dpm_solver_pp_from_the_last_timestep(tiny_generator, monkeypatch):
    """10 steps: 999, 899, ..., 99 ("trailing"), so the window t <= 200 records 199 and 99, and
    self-attention at 99; the x0 prediction is clipped to [-1, 1] as DDIM clips it."""
    sched = sampling.scheduler(tiny_generator, "DPMSolverMultistep", 10)
    assert isinstance(sched, DPMSolverMultistepScheduler)
    c = sched.config
    assert (c.algorithm_type, c.solver_order, c.final_sigmas_type) == ("dpmsolver++", 2, "zero")
    assert c.prediction_type == tiny_generator.scheduler.config.prediction_type == "v_prediction"
    assert sched.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    x0 = torch.linspace(-3, 3, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    assert c.thresholding and torch.equal(sched._threshold_sample(x0), x0.clamp(-1, 1))
    _, _, _, calls = _sample_and_watch(tiny_generator, monkeypatch, "DPMSolverMultistep")
    assert [(t, s) for t, active, s in calls if active] == [(199.0, False), (99.0, True)]


def test_dpm_solver_clips_only_what_the_schedule_clips():
    no_clip = {**DDIMScheduler().config, "clip_sample": False}  # a latent model's schedule (Stable Diffusion)
    assert "thresholding" not in sampling.solver_options("DPMSolverMultistep", no_clip)
    with pytest.raises(ValueError, match=r"clips the predicted sample to \[-1, 1\] only"):
        sampling.solver_options("DPMSolverMultistep", {**no_clip, "clip_sample": True, "clip_sample_range": 2.0})


def test_ddim_is_what_a_plain_ddim_scheduler_gives(tiny_generator, monkeypatch):
    """The solver options touch DDIM not at all: the same bytes as a DDIMScheduler built directly
    from the generator's schedule, images and recorded attention."""
    assert sampling.solver_options("DDIM", tiny_generator.scheduler.config) == {}
    ours, ours_store, _, _ = _sample_and_watch(tiny_generator, monkeypatch, "DDIM")

    def plain_ddim(gen, name, steps):
        assert name == "DDIM"
        sched = DDIMScheduler.from_config(gen.scheduler.config)
        sched.set_timesteps(steps)
        return sched

    monkeypatch.setattr(sampling, "scheduler", plain_ddim)
    plain, plain_store, _, _ = _sample_and_watch(tiny_generator, monkeypatch, "DDIM")
    assert np.array_equal(ours, plain)
    assert ours_store.sums.keys() == plain_store.sums.keys()
    assert all(torch.equal(ours_store.sums[k], plain_store.sums[k]) for k in ours_store.sums)
    assert torch.equal(ours_store.affinity(), plain_store.affinity())
