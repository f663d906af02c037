"""The token positions of the words to record, and their per-word maps.

A word the tokenizer splits ("potted plant", or a rare word in SD's BPE vocabulary) is recorded on
all of its tokens and averaged into one map: ``word_tokens`` builds the token index and the
averaging weights, ``word_maps`` applies them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .recorder import AttentionStore


def token_positions(tokenizer, prompt: str, word: str) -> list[int]:
    """Positions of ``word``'s tokens in the tokenized ``prompt`` (words split into several tokens included)."""
    ids = tokenizer(prompt)["input_ids"]
    sub = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not sub:
        raise KeyError(f"word {word!r} encodes to no tokens")
    for i in range(len(ids) - len(sub) + 1):
        if ids[i:i + len(sub)] == sub:
            return list(range(i, i + len(sub)))
    raise KeyError(f"word {word!r} does not occur in prompt {prompt!r}")


@dataclass(frozen=True)
class WordTokens:
    """The token positions to record for a batch of prompts and how they make up each prompt's words.

    ``index``: (B, K) long, the ``token_index`` of an ``AttentionStore``; ``weights``: (B, W, K),
    row w of prompt b averages the columns of that prompt's w-th word (zero elsewhere, so a prompt
    whose words have fewer tokens than K simply pads)."""

    index: torch.Tensor
    weights: torch.Tensor


def word_tokens(tokenizer, prompts: str | Sequence[str], words: Sequence[str] | Sequence[Sequence[str]]) -> WordTokens:
    """Token index and per-word averaging weights for ``words`` in ``prompts``.

    One prompt (a str) takes a list of words and gives B = 1; a list of prompts takes one list of
    words per prompt, the same number W for each (the words themselves may differ: "sparrow" in one
    prompt, "blue jay" in the next). A word of several tokens ("potted plant", or one word the
    tokenizer splits) keeps all of them."""
    if isinstance(prompts, str):
        if isinstance(words, str) or not all(isinstance(w, str) for w in words):
            raise TypeError(f"one prompt takes a list of words, got {words!r}")
        prompts, words = [prompts], [list(words)]
    if len(prompts) != len(words):
        raise ValueError(f"{len(prompts)} prompts but {len(words)} word lists")
    if len({len(ws) for ws in words}) > 1 or any(isinstance(ws, str) for ws in words):
        raise ValueError(f"every prompt needs a list of the same number of words, got {list(words)!r}")
    limit = tokenizer.model_max_length
    positions = []
    for p, ws in zip(prompts, words, strict=True):
        pos = [token_positions(tokenizer, p, w) for w in ws]
        for w, ps in zip(ws, pos, strict=True):
            if ps[-1] >= limit:
                raise ValueError(f"word {w!r} of prompt {p!r} is token {ps[-1]}, past the tokenizer's {limit}-token "
                                 f"limit: the text encoder never sees it (shorten the prompt)")
        positions.append(pos)
    B, W = len(prompts), len(words[0])
    K = max(sum(len(ps) for ps in pos) for pos in positions)
    index, weights = torch.zeros(B, K, dtype=torch.long), torch.zeros(B, W, K)
    for b, pos in enumerate(positions):
        k = 0
        for w, ps in enumerate(pos):
            index[b, k:k + len(ps)] = torch.tensor(ps)
            weights[b, w, k:k + len(ps)] = 1.0 / len(ps)
            k += len(ps)
    return WordTokens(index, weights)


def word_maps(store: AttentionStore, tokens: WordTokens, size: int,
              resolutions: Sequence[int] | None = None) -> torch.Tensor:
    """(B, W, size, size): ``store.maps`` averaged over each word's tokens, one map per word."""
    if tuple(store.token_index.shape) != tuple(tokens.index.shape) or not torch.equal(store.token_index, tokens.index):
        raise ValueError("the store was not built from these word tokens: give it AttentionStore(tokens.index)")
    maps = store.maps(size, resolutions)
    B, W, K = tokens.weights.shape
    if W == K and torch.equal(tokens.weights, torch.eye(W).expand(B, W, W)):
        return maps  # one token a word: the maps are the words' own
    return torch.einsum("bkhw,bvk->bvhw", maps, tokens.weights.to(maps.device))
