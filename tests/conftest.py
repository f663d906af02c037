"""CPU-sized fixtures: tiny configs and a tiny generator built from configs (random weights)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from freemask.params import Generate, TrainGenerator, World


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_world() -> World:
    return World(generator_train_size=40, real_train_size=6, real_val_size=4, captions=200, shard_size=16)


@pytest.fixture
def tiny_generator_cfg() -> TrainGenerator:
    return TrainGenerator(steps=4, batch_size=4, channels=[8, 16, 16], text_hidden=16, attention_heads=2,
                          checkpoint_every=2, warmup_steps=1, threads=1)


@pytest.fixture
def tiny_generator(tiny_generator_cfg):
    from freemask.generators.train_toy import build_generator

    torch.manual_seed(0)
    return build_generator(tiny_generator_cfg, resolution=32)


@pytest.fixture
def tiny_generate_cfg() -> Generate:
    return Generate(per_class=2, scenes_per_background=1, steps=2, guidance=2.0, batch_size=5, shard_size=7)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
