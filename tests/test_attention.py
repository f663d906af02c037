import dataclasses

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from transformers import CLIPTokenizer

from freemask.attention.recorder import (AttentionRecorder, AttentionStore, cross_attention_layers, layer_resolutions,
                                         recording)
from freemask.attention.tokens import WordTokens, token_positions, word_maps, word_tokens
from freemask.diffusion.sampling import sample
from freemask.diffusion.toy import build_tokenizer


def _inputs(gen, n=2):
    torch.manual_seed(1)
    x = torch.randn(n, 3, 32, 32)
    ctx = gen.encode(["a photo of a car on the road", "a photo of a bird in the sky"][:n])
    return x, torch.tensor([500] * n), ctx


def test_recorder_returns_what_the_default_processor_returns(tiny_generator):
    unet = tiny_generator.unet.eval()
    x, t, ctx = _inputs(tiny_generator)
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=ctx).sample
        store = AttentionStore(torch.tensor([[5], [5]]))
        with recording(unet, store):
            rec = unet(x, t, encoder_hidden_states=ctx).sample
        after = unet(x, t, encoder_hidden_states=ctx).sample
    assert torch.allclose(plain, rec, atol=1e-5)
    assert not any(isinstance(p, AttentionRecorder) for p in unet.attn_processors.values())
    assert torch.equal(plain, after)


def test_store_records_every_cross_attention_layer_by_resolution(tiny_generator):
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    store = AttentionStore(torch.tensor([[5], [8]]))
    with torch.no_grad(), recording(unet, store):
        unet(x, t, encoder_hidden_states=ctx)
        unet(x, t, encoder_hidden_states=ctx)
    assert set(store.sums) == set(cross_attention_layers(unet))
    assert set(store.layers_by_resolution()) == {32, 16, 8}  # every level has cross-attention
    assert all(c == 2 for c in store.counts.values())  # a running sum: one tensor per layer, however many steps
    assert all(s.shape[0] == 2 and s.shape[2] == 1 for s in store.sums.values())
    maps = store.maps(32, [16])
    assert maps.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="recorded: \\[8, 16, 32\\]"):
        store.maps(32, [64])


def test_recorded_probabilities_are_the_token_columns_of_a_softmax(tiny_generator):
    """Recording every token column of one layer sums to one per pixel (probabilities, not logits)."""
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator, 1)
    store = AttentionStore(torch.arange(16)[None, :])
    with torch.no_grad(), recording(unet, store):
        unet(x, t, encoder_hidden_states=ctx)
    for s in store.sums.values():
        assert torch.allclose(s.sum(-1), torch.ones(1), atol=1e-5)


def test_only_the_conditional_branch_is_recorded_under_guidance(tiny_generator):
    store = AttentionStore(torch.tensor([[5]]))
    sample(tiny_generator, ["a photo of a car on the road"], [3], steps=2, guidance=3.0, store=store)
    assert store.batch_slice == slice(1, 2)
    assert all(s.shape[0] == 1 for s in store.sums.values())
    assert all(c == 2 for c in store.counts.values())


def test_only_steps_up_to_max_timestep_are_recorded(tiny_generator):
    """DDIM with 10 steps visits 900, 800, ..., 0: a window of <= 200 keeps the last three."""
    prompt = ["a photo of a car on the road"]
    store = AttentionStore(torch.tensor([[5]]))
    windowed = sample(tiny_generator, prompt, [3], steps=10, guidance=3.0, store=store, record_max_timestep=200)
    assert all(c == 3 for c in store.counts.values())
    plain = sample(tiny_generator, prompt, [3], steps=10, guidance=3.0)  # SDPA: equal up to float rounding
    assert np.abs(windowed.astype(int) - plain).max() <= 1
    offset = dataclasses.replace(tiny_generator, scheduler=DDPMScheduler.from_config(
        tiny_generator.scheduler.config, steps_offset=1))  # timesteps 501, 1
    with pytest.raises(ValueError, match="generate.max_timestep=0 is below every one"):
        sample(offset, prompt, [3], steps=2, guidance=3.0, store=AttentionStore(torch.tensor([[5]])),
               record_max_timestep=0)


def test_under_guidance_only_the_conditional_rows_are_computed_explicitly(tiny_generator):
    """The recorder runs the unconditional rows through the layer's own processor and gives the
    conditional rows' probabilities to the store: the same sums and the same output as computing
    every row explicitly."""
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    both = torch.cat([tiny_generator.encode(["", ""]), ctx])
    stores = []
    for fallback in (True, False):
        store = AttentionStore(torch.tensor([[5], [8]]), batch_slice=slice(2, 4), self_attention_resolution=16)
        with torch.no_grad(), recording(unet, store):
            if not fallback:  # every recorder computes all rows explicitly
                for p in unet.attn_processors.values():
                    if isinstance(p, AttentionRecorder):
                        p.fallback = None
            out = unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=both).sample
        stores.append((store, out))
    (split, out_split), (full, out_full) = stores
    assert torch.allclose(out_split, out_full, atol=1e-5)
    assert set(split.sums) == set(full.sums)
    for k in split.sums:
        assert split.sums[k].shape[0] == 2 and torch.allclose(split.sums[k], full.sums[k], atol=1e-6)
    assert torch.allclose(split.affinity(), full.affinity(), atol=1e-6)


@pytest.mark.parametrize("guided", [False, True])
def test_self_attention_in_chunks_of_prompts_is_what_one_piece_gives(tiny_generator, monkeypatch, guided):
    """The explicit self-attention is computed a prompt at a time when a chunk is that small: the
    same affinity, the same count of recorded layer calls and the same UNet output as one piece."""
    import freemask.attention.recorder as attention
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    if guided:
        x, t, ctx = torch.cat([x, x]), torch.cat([t, t]), torch.cat([tiny_generator.encode(["", ""]), ctx])
    runs = []
    for budget in (1, 2**40):  # one prompt per chunk; every prompt at once
        monkeypatch.setattr(attention, "SELF_ATTENTION_CHUNK_BYTES", budget)
        store = AttentionStore(torch.tensor([[5], [8]]), batch_slice=slice(2, 4) if guided else None,
                               self_attention_resolution=16)
        with torch.no_grad(), recording(unet, store):
            out = unet(x, t, encoder_hidden_states=ctx).sample
        runs.append((store, out))
    (chunked, out_chunked), (whole, out_whole) = runs
    assert chunked.self_count == whole.self_count > 0
    # a chunk's scores and softmax are a (heads, HW, HW) batch, the whole one's (prompts * heads, HW, HW):
    # another batch shape may take another kernel. The affinities here are 0.0019 to 0.0079, within 1.2e-6
    # relative of a float64 run; a wrong, dropped or doubled row is off by 30 % or more
    torch.testing.assert_close(chunked.affinity(), whole.affinity(), rtol=1e-5, atol=1e-8)
    assert torch.equal(chunked.affinity(slice(1, 2)), chunked.affinity()[1:2])  # the rows of the same sums
    # probabilities 1.2e-6 off (as float32 is from float64 here) move the UNet output by up to 1.1e-6
    assert torch.allclose(out_chunked, out_whole, atol=1e-5)


@pytest.mark.parametrize("kept", [slice(2, 4), slice(1, 4, 2)])
def test_self_attention_of_the_whole_batch_is_chunked_and_keeps_the_store_rows(tiny_generator, monkeypatch, kept):
    """Without a layer processor to fall back on (or with a strided ``batch_slice``) a recorder sees
    the whole UNet batch: it still computes the self-attention a prompt at a time and hands the store
    only its rows, the same affinity as every row recorded and those rows taken."""
    import freemask.attention.recorder as attention
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    x, t, ctx = torch.cat([x, x]), torch.cat([t, t]), torch.cat([tiny_generator.encode(["", ""]), ctx])
    chunks = []
    real = attention.attention_probs_into
    monkeypatch.setattr(attention, "attention_probs_into", lambda attn, q, *a: chunks.append(q.shape[0]) or real(attn, q, *a))
    monkeypatch.setattr(attention, "SELF_ATTENTION_CHUNK_BYTES", 1)  # one prompt per chunk
    runs, chunks_per_run = [], []
    for batch_slice in (kept, None):
        chunks.clear()
        store = AttentionStore(torch.tensor([[5], [8]] if batch_slice is not None else [[5]] * 4),
                               batch_slice=batch_slice, self_attention_resolution=16)
        with torch.no_grad(), recording(unet, store):
            for p in unet.attn_processors.values():
                if isinstance(p, AttentionRecorder):
                    p.fallback = None
            out = unet(x, t, encoder_hidden_states=ctx).sample
        runs.append((store, out))
        chunks_per_run.append(list(chunks))
    (mine, out_mine), (every, out_every) = runs
    self_layers = [n for n, r in layer_resolutions(unet).items() if ".attn1." in n and r == 16]
    heads = {unet.get_submodule(n.removesuffix(".processor")).heads for n in self_layers}
    for calls in chunks_per_run:  # a prompt at a time, all 4 rows of the batch, in both runs
        assert len(calls) == 4 * len(self_layers) and set(calls) <= heads
    assert mine.self_count == every.self_count > 0
    # exact: both runs compute the same one-prompt chunks, and keeping rows only adds and divides elementwise
    assert torch.equal(mine.affinity(), every.affinity()[kept])
    assert torch.equal(out_mine, out_every)


def test_self_attention_is_recorded_at_the_last_asked_steps_only(tiny_generator):
    """10 DDIM steps record 200, 100, 0 (max_timestep 200); self-attention_steps=1 keeps step 0 alone."""
    prompt = ["a photo of a car on the road"]
    store = AttentionStore(torch.tensor([[5]]), self_attention_resolution=16)
    sample(tiny_generator, prompt, [3], steps=10, guidance=3.0, store=store, record_max_timestep=200,
           self_attention_steps=1)
    n_layers = sum(1 for n, r in layer_resolutions(tiny_generator.unet).items() if ".attn1." in n and r == 16)
    assert store.self_count == n_layers
    assert all(c == 3 for c in store.counts.values())  # cross-attention: every recorded step
    every = AttentionStore(torch.tensor([[5]]), self_attention_resolution=16)
    sample(tiny_generator, prompt, [3], steps=10, guidance=3.0, store=every, record_max_timestep=200)
    assert every.self_count == 3 * n_layers


def test_token_positions_handle_multi_word_names_and_report_missing_words():
    tok = build_tokenizer(["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "photo", "of", "potted", "plant", "on", "the", "floor"])
    assert token_positions(tok, "a photo of a potted plant on the floor", "potted plant") == [5, 6]
    with pytest.raises(KeyError, match="does not occur"):
        token_positions(tok, "a photo of the floor", "plant")


def test_sampling_is_deterministic_and_per_sample_seeded(tiny_generator):
    a = sample(tiny_generator, ["a photo of a car on the road"], [7], steps=3, guidance=2.0)
    b = sample(tiny_generator, ["a photo of a car on the road", "a photo of a bird in the sky"], [7, 8], steps=3, guidance=2.0)
    again = sample(tiny_generator, ["a photo of a car on the road"], [7], steps=3, guidance=2.0)
    assert a.dtype == np.uint8 and a.shape == (1, 32, 32, 3)
    assert np.array_equal(a, again)
    assert np.abs(a[0].astype(int) - b[0].astype(int)).max() <= 1  # batch mates do not change a sample


def test_unknown_prompt_words_are_named(tiny_generator):
    with pytest.raises(KeyError, match="zebra"):
        tiny_generator.encode(["a photo of a zebra on the road"])


def test_self_attention_at_the_asked_resolution_becomes_a_row_stochastic_affinity(tiny_generator):
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    store = AttentionStore(torch.tensor([[5], [8]]), batch_slice=slice(0, 2), self_attention_resolution=16)
    with torch.no_grad(), recording(unet, store):
        unet(x, t, encoder_hidden_states=ctx)
        unet(x, t, encoder_hidden_states=ctx)
        self_recorders = {n for n, p in unet.attn_processors.items()
                          if isinstance(p, AttentionRecorder) and p.self_attention}
    assert self_recorders == {n for n, r in layer_resolutions(unet).items() if ".attn1." in n and r == 16}  # no wasted work
    aff = store.affinity()
    assert aff.shape == (2, 256, 256)
    assert torch.allclose(aff.sum(-1), torch.ones(2, 256), atol=1e-5)  # mean of softmax rows over layers and steps
    n_layers = sum(1 for n in unet.attn_processors if ".attn1." in n and n.startswith(("down_blocks.1", "up_blocks.1")))
    assert store.self_count == 2 * n_layers
    assert set(store.sums) == set(cross_attention_layers(unet))  # cross-attention is recorded as before
    assert not any(isinstance(p, AttentionRecorder) for p in unet.attn_processors.values())


def test_layer_resolutions_match_the_feature_maps_the_layers_see(tiny_generator):
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    store = AttentionStore(torch.tensor([[5], [8]]), batch_slice=slice(0, 2))
    with torch.no_grad(), recording(unet, store):
        unet(x, t, encoder_hidden_states=ctx)
    res = layer_resolutions(unet)
    assert set(res) == set(unet.attn_processors)
    assert {n: res[n] for n in store.resolution} == store.resolution  # cross-attention layers, measured
    assert set(res.values()) == {32, 16, 8}


def test_affinity_without_self_attention_recording_is_a_clear_error():
    with pytest.raises(ValueError, match="no self-attention recorded"):
        AttentionStore(torch.tensor([[5]])).affinity()


def test_guidance_applies_only_up_to_guidance_max_timestep(tiny_generator):
    pr, seeds = ["a photo of a car on the road", "a photo of a bird in the sky"], [3, 4]
    plain = sample(tiny_generator, pr, seeds, steps=4, guidance=1.0)
    full = sample(tiny_generator, pr, seeds, steps=4, guidance=3.0)
    # guidance_max_timestep=-1 is below every step
    assert np.array_equal(sample(tiny_generator, pr, seeds, steps=4, guidance=3.0, guidance_max_timestep=-1), plain)
    assert np.array_equal(sample(tiny_generator, pr, seeds, steps=4, guidance=3.0, guidance_max_timestep=1000), full)
    store = AttentionStore(torch.tensor([[5], [5]]))
    part = sample(tiny_generator, pr, seeds, steps=4, guidance=3.0, guidance_max_timestep=500, store=store)
    assert not np.array_equal(part, plain) and not np.array_equal(part, full)
    assert all(s.shape[0] == 2 and c == 4 for s, c in zip(store.sums.values(), store.counts.values()))


def test_recording_over_sdpa_processors_restores_them_and_changes_nothing(tiny_generator):
    unet = tiny_generator.unet.eval()
    unet.set_attn_processor(AttnProcessor2_0())  # diffusers' default, set explicitly
    before = dict(unet.attn_processors)
    x, t, ctx = _inputs(tiny_generator)
    store = AttentionStore(torch.tensor([[5], [8]]))
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=ctx).sample
        with recording(unet, store):
            rec = unet(x, t, encoder_hidden_states=ctx).sample
    assert set(store.sums) == {n for n in before if ".attn2." in n}
    assert {n: type(p) for n, p in unet.attn_processors.items()} == {n: AttnProcessor2_0 for n in before}
    assert all(unet.attn_processors[n] is p for n, p in before.items())  # the very objects, not copies
    assert torch.allclose(plain, rec, atol=1e-5)


def test_a_resolution_subset_records_only_those_layers_and_the_same_sums(tiny_generator):
    unet = tiny_generator.unet.eval()
    x, t, ctx = _inputs(tiny_generator)
    every, only16 = AttentionStore(torch.tensor([[5], [8]])), AttentionStore(torch.tensor([[5], [8]]), resolutions=[16])
    with torch.no_grad():
        with recording(unet, every):
            full = unet(x, t, encoder_hidden_states=ctx).sample
        with recording(unet, only16):
            part = unet(x, t, encoder_hidden_states=ctx).sample
    at16 = {n for n, r in every.resolution.items() if r == 16}
    assert at16 and set(only16.sums) == at16 and only16.skipped_resolutions == {8, 32}
    assert all(torch.allclose(only16.sums[n], every.sums[n]) for n in at16)
    assert torch.allclose(only16.maps(32), every.maps(32, [16]), atol=1e-6)
    assert torch.allclose(full, part, atol=1e-5)  # the other layers ran their own processor
    with pytest.raises(RuntimeError, match=r"records cross-attention at resolutions \[64\], the UNet's "
                                           r"cross-attention ran at \[8, 16, 32\]"):
        with torch.no_grad(), recording(unet, AttentionStore(torch.tensor([[5], [8]]), resolutions=[64])):
            unet(x, t, encoder_hidden_states=ctx)


def test_recording_raises_when_the_recorders_were_bypassed(tiny_generator):
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    layer = r"down_blocks\.\d\.attentions\.\d\.transformer_blocks\.0\.attn2\.processor"
    with pytest.raises(RuntimeError, match=r"1 forward pass\(es\) with the attention store active, but no attention "
                                           r"layer recorded anything: \d+ recorders were replaced inside the context "
                                           rf"\({layer} -> AttnProcessor, {layer} -> AttnProcessor, .*, \.\.\.\)$"):
        with torch.no_grad(), recording(unet, AttentionStore(torch.tensor([[5], [8]]))):
            unet.set_attn_processor(AttnProcessor())
            unet(x, t, encoder_hidden_states=ctx)
    assert not any(isinstance(p, AttentionRecorder) for p in unet.attn_processors.values())


def test_recording_raises_when_attention_runs_outside_the_processors(tiny_generator, monkeypatch):
    """As fused or compiled attention would: the recorders stay installed but are never called."""
    from diffusers.models.attention_processor import Attention

    def fused(self, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        return AttnProcessor2_0()(self, hidden_states, encoder_hidden_states, attention_mask)

    monkeypatch.setattr(Attention, "forward", fused)
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    with pytest.raises(RuntimeError, match="2 forward pass.*did not call its attention processors"):
        with torch.no_grad(), recording(unet, AttentionStore(torch.tensor([[5], [8]]))):
            unet(x, t, encoder_hidden_states=ctx)
            unet(x, t, encoder_hidden_states=ctx)


def test_steps_left_unrecorded_on_purpose_are_no_error(tiny_generator):
    unet = tiny_generator.unet
    x, t, ctx = _inputs(tiny_generator)
    idle = AttentionStore(torch.tensor([[5], [8]]))
    idle.active = False
    with torch.no_grad(), recording(unet, idle):
        unet(x, t, encoder_hidden_states=ctx)
    assert idle.sums == {}
    with pytest.raises(ValueError, match="no cross-attention was recorded"):
        idle.maps(32)
    partial = AttentionStore(torch.tensor([[5], [8]]))
    with torch.no_grad(), recording(unet, partial):
        for active in (False, True, False):
            partial.active = active
            unet(x, t, encoder_hidden_states=ctx)
    assert all(c == 1 for c in partial.counts.values())


def test_word_tokens_index_every_token_of_multi_token_words(clip_tokenizer_dir):
    tok = CLIPTokenizer.from_pretrained(clip_tokenizer_dir)
    assert tok.tokenize("potted sparrow") == ["pot", "ted</w>", "spar", "row</w>"]  # the vocabulary splits them
    one = word_tokens(tok, "a photo of a potted plant on the floor", ["potted plant", "floor"])
    assert one.index.tolist() == [[5, 6, 7, 10]]  # <|startoftext|> a photo of a pot ted plant on the floor
    assert torch.allclose(one.weights, torch.tensor([[[1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 1]]]))
    two = word_tokens(tok, ["a photo of a dog on the grass", "a photo of a sparrow in the sky"], [["dog"], ["sparrow"]])
    assert two.index.tolist() == [[5, 0], [5, 6]]  # a one-token word pads with a zero-weight column
    assert two.weights.tolist() == [[[1.0, 0.0]], [[0.5, 0.5]]]
    with pytest.raises(KeyError, match="'jay' does not occur"):
        word_tokens(tok, ["a photo of a dog"], [["jay"]])
    with pytest.raises(ValueError, match="same number of words"):
        word_tokens(tok, ["a photo of a dog", "a dog on the grass"], [["dog"], ["dog", "grass"]])
    with pytest.raises(ValueError, match="a list of the same number of words"):
        word_tokens(tok, ["a photo of a dog", "a dog on the grass"], ["dog", "cat"])  # strings, not one list per prompt
    short = CLIPTokenizer.from_pretrained(clip_tokenizer_dir, model_max_length=6)
    with pytest.raises(ValueError, match="'grass' of prompt .* is token 8, past the tokenizer's 6-token limit"):
        word_tokens(short, "a photo of a dog on the grass", ["grass"])


def test_word_maps_average_the_maps_of_a_words_tokens():
    """Two prompts, a 2x2 layer with 6 text tokens; word 0 of prompt 1 has two tokens (columns 2, 3)."""
    tokens = WordTokens(index=torch.tensor([[4, 0], [2, 3]]), weights=torch.tensor([[[1.0, 0.0]], [[0.5, 0.5]]]))
    probs = torch.softmax(torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(0)), -1)  # (B * 1 head, HW, seq)
    store = AttentionStore(tokens.index)
    store.add("layer", probs, heads=1, height=2)
    maps = word_maps(store, tokens, size=2)
    assert maps.shape == (2, 1, 2, 2)
    assert torch.allclose(maps[0, 0].flatten(), probs[0, :, 4])
    assert torch.allclose(maps[1, 0].flatten(), (probs[1, :, 2] + probs[1, :, 3]) / 2)
    with pytest.raises(ValueError, match="not built from these word tokens"):
        word_maps(AttentionStore(torch.tensor([[4], [2]])), tokens, size=2)


def test_inactive_steps_run_the_layers_own_processors_and_record_nothing(tiny_generator):
    unet = tiny_generator.unet.eval()
    x, t, ctx = _inputs(tiny_generator)
    store = AttentionStore(torch.tensor([[5], [8]]), self_attention_resolution=32)
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=ctx).sample
        with recording(unet, store):
            store.active = False
            off = unet(x, t, encoder_hidden_states=ctx).sample
            store.active = True
            on = unet(x, t, encoder_hidden_states=ctx).sample
    assert torch.equal(plain, off)  # the default processors ran, bit for bit
    assert torch.allclose(plain, on, atol=1e-5)
    assert set(store.counts.values()) == {1} and store.self_count > 0  # only the active pass was recorded


def test_freed_heap_pages_are_released_at_each_attention_layer_of_self_recording_steps_only(tiny_generator, monkeypatch):
    """The steps that record self-attention hold the peak; before each of their attention layers the
    freed heap pages go back to the system. Other steps, and the UNet after the context, pay nothing."""
    import freemask.attention.recorder as attention_module

    calls = []
    monkeypatch.setattr(attention_module, "release_free_memory", lambda: calls.append(1) or True)
    unet = tiny_generator.unet.eval()
    x, t, ctx = _inputs(tiny_generator)
    n_layers = len(unet.attn_processors)
    store = AttentionStore(torch.tensor([[5], [8]]), self_attention_resolution=32)
    with torch.no_grad():
        with recording(unet, store):
            store.self_active = False
            unet(x, t, encoder_hidden_states=ctx)
            assert calls == []  # a cross-attention-only step
            store.self_active = True
            unet(x, t, encoder_hidden_states=ctx)
            assert len(calls) == n_layers
        unet(x, t, encoder_hidden_states=ctx)  # the hooks left with the context
        assert len(calls) == n_layers
        with recording(unet, AttentionStore(torch.tensor([[5], [8]]))):  # no self-attention asked for
            unet(x, t, encoder_hidden_states=ctx)
    assert len(calls) == n_layers
