"""Mask2Former architectures by name (``train.backbone``), built from configs, never downloaded.

- ``micro``: the toy world's tiny Swin; every size comes from the Train params.
- ``r50``: the Mask2Former paper's semantic config with a ResNet-50 (bottleneck depths 3-4-6-3),
  256-d pixel decoder (6 deformable-attention layers) and transformer decoder (9 layers,
  100 queries, 8 heads, FFN 2048).
- ``swin_b``: the same heads on a Swin-B (embed 128, depths 2-2-18-2, heads 4-8-16-32, window 12).

``train.backbone_weights`` names a local state dict (safetensors, or a PyTorch ``.bin`` / ``.pt``)
for the backbone -- e.g. ImageNet weights saved from ``model.backbone.state_dict()`` of a model
built with the same profile; keys and shapes must match exactly.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..io import load_safetensors, load_torch
from ..params import Train

# What the paper's configs share beyond the backbone (Cheng et al. 2022, Table / configs for ADE20K semantic).
PAPER_HEADS = dict(hidden_dim=256, encoder_layers=6, num_queries=100, decoder_layers=9, heads=8, feedforward=2048)
STAGES = ["stage1", "stage2", "stage3", "stage4"]
KEY = "train.backbone_weights"


def backbone_config(cfg: Train):
    """The transformers backbone config of ``cfg.backbone`` at ``cfg.input_size`` (stored as
    ``image_size`` so that a saved model knows its input size)."""
    from transformers import ResNetConfig, SwinConfig

    if cfg.backbone == "micro":
        dims = [cfg.backbone_dim * 2**i for i in range(4)]
        return SwinConfig(image_size=cfg.input_size, patch_size=cfg.patch_size, embed_dim=cfg.backbone_dim,
                          depths=list(cfg.backbone_depths), num_heads=[max(1, d // 32) for d in dims],
                          window_size=cfg.window_size, drop_path_rate=0.0, out_features=STAGES)
    if cfg.backbone == "swin_b":
        return SwinConfig(image_size=cfg.input_size, patch_size=4, embed_dim=128, depths=[2, 2, 18, 2],
                          num_heads=[4, 8, 16, 32], window_size=12, drop_path_rate=0.3, out_features=STAGES)
    if cfg.backbone == "r50":
        config = ResNetConfig(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck",
                              out_features=STAGES)
        config.image_size = cfg.input_size  # not a ResNet key: read back by mask2former._input_size
        return config
    raise ValueError(f"train.backbone: unknown profile {cfg.backbone!r} (micro, r50, swin_b)")


def head_sizes(cfg: Train) -> dict:
    """Pixel-decoder and transformer-decoder sizes: from the params for micro, the paper's otherwise.

    ``decoder_layers`` counts the masked-attention layers; transformers' config counts one more
    (the prediction from the learnable queries before the first layer), as detectron2's DEC_LAYERS does.
    """
    if cfg.backbone == "micro":
        heads = max(1, min(8, cfg.hidden_dim // 8))
        return dict(hidden_dim=cfg.hidden_dim, encoder_layers=cfg.encoder_layers, num_queries=cfg.num_queries,
                    decoder_layers=cfg.decoder_layers, heads=heads, feedforward=4 * cfg.hidden_dim,
                    encoder_feedforward=4 * cfg.hidden_dim, stride=cfg.patch_size)
    return {**PAPER_HEADS, "decoder_layers": PAPER_HEADS["decoder_layers"] + 1, "encoder_feedforward": 1024, "stride": 4}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"train.backbone_weights: {path} does not exist (a local state dict; nothing is downloaded)")
    if path.suffix == ".safetensors":
        return load_safetensors(path, key=KEY)
    state = load_torch(path, key=KEY)
    if not isinstance(state, dict):
        raise DataError(path, f"holds a {type(state).__name__}, not a state dict", key=KEY)
    return state


def load_backbone_weights(backbone: torch.nn.Module, path: str | Path) -> None:
    """Load a state dict into ``backbone``; every key must be present with the model's shape."""
    path = Path(path)
    state = _read_state_dict(path)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                 f"{len(shapes)} of another shape (e.g. {shapes[:2]})" if shapes else ""]
        raise DataError(path, "does not fit the backbone: " + "; ".join(p for p in parts if p), key=KEY)
    backbone.load_state_dict(state)
