#!/usr/bin/env python
"""Build a tiny Stable-Diffusion-1.5-shaped pipeline from configs (random weights) and save it with
``save_pretrained``: a diffusers folder laid out as SD 1.5's is, small enough for a CPU smoke run.

    python tools/make_tiny_sd.py OUT [--seed N]

UNet: SD 1.5's block layout (cross-attention in the first three of four levels, 2 layers a block)
on 16x16 latents; VAE: 3 levels (scale factor 4), so images are 64x64; CLIP text encoder: 2 layers,
77 positions; tokenizer: byte-level BPE (CLIP's vocab.json + merges.txt) learned from prompts, so any
text encodes and rarer words take several tokens; scheduler: SD 1.5's PNDM configuration.
Imports only torch, diffusers, transformers and tokenizers. Same seed, same bytes.
"""
import argparse
from collections import Counter
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OBJECTS = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dining table", "dog",
           "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv monitor", "rider", "truck"]
BACKGROUNDS = ["sky", "grass", "road", "water", "street", "field", "room", "floor", "table", "wall", "beach", "snow"]
MERGES = 110  # learned from the prompts below: motor|bike, t|v|monitor, p|ott|ed|plan|t; most class names whole


def learn_bpe(words: Counter, n_merges: int) -> list[tuple[str, str]]:
    """Sennrich et al.'s BPE on CLIP's word form (last symbol ends in </w>); the most frequent pair
    merges first, ties by the pair's text (the tokenizers trainer breaks ties in hash order)."""
    seqs = {tuple(w[:-1]) + (w[-1] + "</w>",): n for w, n in words.items()}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for seq, n in seqs.items():
            for pair in zip(seq, seq[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new = {}
        for seq, n in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if seq[i:i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + n
        seqs = new
    return merges


def make_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE: every byte alone and word-final (so any text encodes), then the merges."""
    corpus = [f"a photo of a {o} {p} the {b}" for o in OBJECTS for p in ("in", "on") for b in BACKGROUNDS]
    merges = learn_bpe(Counter(w for line in corpus for w in line.split()), MERGES)
    alphabet = sorted(ByteLevel.alphabet())
    tokens = alphabet + [c + "</w>" for c in alphabet] + [a + b for a, b in merges]
    tokens = list(dict.fromkeys(tokens)) + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=77)


def build(seed: int) -> StableDiffusionPipeline:
    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(16, 32, 32, 32),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64, layers_per_block=1,
        block_out_channels=(16, 32, 32), norm_num_groups=8, scaling_factor=0.18215,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
    scheduler = PNDMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (model_index.json, unet/, vae/, ...)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random weights")
    args = parser.parse_args()
    pipe = build(args.seed)
    pipe.save_pretrained(args.out)
    # the tokenizer as SD 1.5's checkpoint holds it: vocab.json + merges.txt (and its config), no tokenizer.json
    pipe.tokenizer.backend_tokenizer.model.save(str(args.out / "tokenizer"))
    (args.out / "tokenizer" / "tokenizer.json").unlink()
    split = {w: "|".join(pipe.tokenizer.tokenize(w)).replace("</w>", "") for w in ("motorbike", "potted plant", "tv monitor")}
    print(f"wrote {args.out}: {sum(p.numel() for p in pipe.unet.parameters())} UNet parameters, "
          f"{len(pipe.tokenizer)} tokens; " + ", ".join(f"{w!r} -> {t}" for w, t in split.items()))


if __name__ == "__main__":
    main()
