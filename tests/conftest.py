"""CPU-sized fixtures: tiny configs and a tiny generator built from configs (random weights)."""
from __future__ import annotations

import json
import socket

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
    from freemask.diffusion.train_toy import build_generator

    torch.manual_seed(0)
    return build_generator(tiny_generator_cfg, resolution=32)


@pytest.fixture
def tiny_generate_cfg() -> Generate:
    return Generate(per_class=2, scenes_per_background=1, steps=2, guidance=2.0, batch_size=5, shard_size=7)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# Words of the tiny CLIP BPE vocabulary, each as the BPE pieces it encodes to: "potted" and
# "sparrow" split into two tokens, as rarer words do in SD's 49k-token vocabulary.
BPE_WORDS = {"a": ["a"], "photo": ["photo"], "of": ["of"], "on": ["on"], "in": ["in"], "the": ["the"],
             "grass": ["grass"], "sky": ["sky"], "floor": ["floor"], "potted": ["pot", "ted"], "plant": ["plant"],
             "dog": ["dog"], "bird": ["bird"], "blue": ["blue"], "jay": ["jay"], "sparrow": ["spar", "row"]}


@pytest.fixture
def clip_tokenizer_dir(tmp_path):
    """A folder with the vocab.json and merges.txt of a tiny CLIP BPE tokenizer (the files an SD
    checkpoint's ``tokenizer/`` holds): every letter, and each word of ``BPE_WORDS`` merged left to
    right into its pieces, the last piece carrying CLIP's end-of-word ``</w>``."""
    vocab, merges = {"<|startoftext|>": 0, "<|endoftext|>": 1}, []
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    for pieces in BPE_WORDS.values():
        for k, piece in enumerate(pieces):
            symbols = list(piece[:-1]) + [piece[-1] + ("</w>" if k == len(pieces) - 1 else "")]
            merged = symbols[0]
            for s in symbols[1:]:
                if f"{merged} {s}" not in merges:
                    merges.append(f"{merged} {s}")
                merged += s
                vocab.setdefault(merged, len(vocab))
    folder = tmp_path / "clip_tokenizer"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Every attempt to resolve or connect to a host, recorded and refused."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return attempts
