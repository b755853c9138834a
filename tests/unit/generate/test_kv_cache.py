"""The reserved KV cache: written in place, and every step's logits those of transformers' DynamicCache,
whatever the cache is asked to do in between (crop, batch selection, beam reordering, running out of room);
its prefill without padding; the grouped-query attention of decoding steps on a CPU."""

import os
from dataclasses import replace

import pytest
import torch
from transformers import DynamicCache

from bioqa.generate import backends
from bioqa.generate.generation import FORCE_GQA, GenerationSettings, generate_token_ids
from bioqa.generate.kv_cache import ReservedLayer, length_groups, prefilled_cache, reserved_cache
from tiny_models import build_model

PROMPT = torch.tensor([[0, 0, 11, 12, 13, 14], [21, 22, 23, 24, 25, 26]])
MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])


def decode(model, cache, steps: int, between=None) -> list[torch.Tensor]:
    """Logits of a left-padded prefill and `steps` greedy steps; after the second, `between(cache, mask)` may
    change the cache and returns the new mask and the rows (of the batch before) that go on."""
    mask, logits = MASK, []
    with torch.inference_mode():
        out = model(input_ids=PROMPT, attention_mask=mask, past_key_values=cache, use_cache=True)
        for step in range(steps):
            logits.append(out.logits[:, -1])
            last = out.logits[:, -1:]
            if step == 1 and between:
                mask, rows = between(cache, mask)
                last = last[rows]
            mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype)], 1)
            out = model(input_ids=last.argmax(-1), attention_mask=mask, past_key_values=cache, use_cache=True)
    return logits


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model(tokenizer, seed=3).eval()


def test_each_step_writes_in_place_and_equals_the_dynamic_cache(model):
    cache = reserved_cache(model, reserve=8)
    assert all(isinstance(layer, ReservedLayer) for layer in cache.layers)
    reserved = decode(model, cache, steps=5)
    assert cache.get_seq_length() == PROMPT.shape[1] + 5  # the prefill, then one token per step
    buffer = cache.layers[0]._buffers[0]
    assert buffer.shape[-2] == PROMPT.shape[1] + 8  # allocated once, at the prefill
    assert cache.layers[0].keys.data_ptr() == buffer.data_ptr()  # a view of it, not a copy
    dynamic = decode(model, DynamicCache(config=model.config), steps=5)
    assert all(torch.equal(a, b) for a, b in zip(reserved, dynamic))


def crop_last(cache, mask):
    cache.crop(-1)
    return mask[:, :-1], [0, 1]


def keep_second_row(cache, mask):
    cache.batch_select_indices(torch.tensor([1]))
    return mask[1:], [1]


def swap_rows(cache, mask):  # what beam search does: a new tensor of the same shape
    cache.reorder_cache(torch.tensor([1, 0]))
    return mask[[1, 0]], [1, 0]


def whole(cache):
    """The cache with its one-token steps over the whole buffers (as for bf16 decoding on a CPU)."""
    for layer in cache.layers:
        layer.whole = True
    return cache


@pytest.mark.parametrize("reserve", [0, 1, 8])
@pytest.mark.parametrize("between", [None, crop_last, keep_second_row, swap_rows])
@pytest.mark.parametrize("over", [lambda cache: cache, whole], ids=["filled-part", "whole-buffers"])
def test_crop_batch_selection_reordering_and_running_out_of_room_give_the_dynamic_caches_logits(
    model, reserve, between, over
):
    reserved = decode(model, over(reserved_cache(model, reserve=reserve)), steps=6, between=between)
    dynamic = decode(model, DynamicCache(config=model.config), steps=6, between=between)
    assert [t.shape for t in reserved] == [t.shape for t in dynamic]
    if over is whole:  # sdpa sums over the masked room too: the same logits up to float32 rounding, which on a
        # logit of about 11 reaches 1.2e-5 on an Intel Xeon with AMX (8e-6 on an AMD EPYC); a wrong key is off by 0.1+
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(reserved, dynamic))
    else:
        assert all(torch.equal(a, b) for a, b in zip(reserved, dynamic))


def test_generate_answers_the_same_with_each_cache_for_greedy_and_beam_search(model, tokenizer):
    prompts = [[11, 12, 13], [21, 22, 23, 24, 25, 26, 27], [31, 32, 33, 34], [41]]
    for beams in (1, 2):
        answers = {
            cache: generate_token_ids(
                model,
                tokenizer,
                prompts,
                GenerationSettings(max_new_tokens=9, batch_size=4, num_beams=beams, cache=cache),
            )
            for cache in ("reserved", "dynamic")
        }
        assert answers["reserved"] == answers["dynamic"] and all(answers["reserved"])


def left_padded_decode(model, cache, prompts, steps: int) -> list[torch.Tensor]:
    """Logits of `steps` greedy steps after the prompts' last token, `cache` holding (at least) the rest."""
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = []
    with torch.inference_mode():
        if cache.get_seq_length() == 0:  # the usual padded prefill of all but the last token
            model(
                input_ids=ids[:, :-1],
                attention_mask=mask[:, :-1],
                position_ids=positions[:, :-1],
                past_key_values=cache,
            )
        last, position = ids[:, -1:], positions[:, -1:]
        for _ in range(steps):
            out = model(input_ids=last, attention_mask=mask, position_ids=position, past_key_values=cache)
            logits.append(out.logits[:, -1])
            last, position = out.logits[:, -1:].argmax(-1), position + 1
            mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype)], 1)
    return logits


# Lengths that make several prefill groups, a one-token prompt (nothing to cache) and an unsorted batch.
MIXED = [[11, 12, 13], [21, 22, 23, 24, 25, 26, 27, 28, 29, 30], [31], [41, 42, 43, 44, 45, 46, 47, 48, 49], [51, 52]]


def test_a_prefill_without_padding_gives_the_padded_prefills_logits_and_zero_padding(model):
    cache = prefilled_cache(model, MIXED, pad_id=0, reserve=4)
    assert cache.get_seq_length() == 9  # the widest prompt but its last token
    keys = cache.layers[0].keys
    assert not keys[2].any() and not keys[0, :, :7].any() and keys[0, :, 7:].abs().sum() > 0  # padding: zeros
    unpadded = left_padded_decode(model, cache, MIXED, steps=4)
    padded = left_padded_decode(model, DynamicCache(config=model.config), MIXED, steps=4)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(unpadded, padded))
    assert cache.layers[0].keys.data_ptr() == cache.layers[0]._buffers[0].data_ptr()  # decoded in place


def test_a_one_token_step_over_the_whole_buffers_masks_the_unfilled_room_as_the_future(model):
    cache = whole(reserved_cache(model, reserve=8))
    decode(model, cache, steps=2)  # the prefill (6 tokens: the filled part), then two one-token steps
    layer = cache.layers[0]
    assert layer.get_mask_sizes(1) == (6 + 8, 0)  # the whole buffer for the next one-token step
    assert layer.get_mask_sizes(2)[0] == layer.get_seq_length() + 2  # more tokens: the filled part, as DynamicLayer
    with torch.inference_mode():
        keys, _ = layer.update(torch.ones(2, 2, 1, 8), torch.ones(2, 2, 1, 8))
    assert keys.data_ptr() == layer._buffers[0].data_ptr() and keys.shape[-2] == 6 + 8
    assert layer.get_seq_length() == 6 + 3  # the cached length counts the filled part only
    cache.reset()
    assert layer.get_mask_sizes(1) == (1, 0)  # nothing cached: as DynamicLayer


def test_prefilled_cache_reads_whole_buffers_where_the_cpu_attention_decodes_bf16(tokenizer):
    from bioqa.generate.attention import use_cpu_attention

    model = build_model(tokenizer, seed=3).eval()
    assert not prefilled_cache(model, MIXED, pad_id=0, reserve=4).layers[0].whole  # sdpa: the filled part
    use_cpu_attention(model, "cpu")
    assert not prefilled_cache(model, MIXED, pad_id=0, reserve=4).layers[0].whole  # float32: sdpa's path
    assert prefilled_cache(model.to(torch.bfloat16), MIXED, pad_id=0, reserve=4).layers[0].whole


def test_only_one_token_prompts_have_nothing_to_prefill(model):
    assert prefilled_cache(model, [[11], [12]], pad_id=0, reserve=4) is None


def test_prefill_groups_run_longest_first_and_pad_at_most_the_slack():
    lengths = [100, 3, 95, 0, 50, 48, 47, 92]
    groups = length_groups(lengths, slack=0.1)
    assert groups == [[0, 2, 7], [4, 5, 6], [1]]  # 0 tokens: none; 3 beside 47 would pad 44 of 50
    for rows in groups:
        assert lengths[rows[0]] * len(rows) <= 1.1 * sum(lengths[r] for r in rows)
    assert length_groups(lengths, slack=0.0) == [[0], [2], [7], [4], [5], [6], [1]]


def test_a_cache_asked_for_through_extra_keywords_is_used_as_it_is(model, tokenizer):
    prompts = [[11, 12, 13], [21, 22, 23, 24]]
    static = GenerationSettings(max_new_tokens=5, extra={"cache_implementation": "static", "disable_compile": True})
    assert generate_token_ids(model, tokenizer, prompts, static) == generate_token_ids(
        model, tokenizer, prompts, GenerationSettings(max_new_tokens=5, cache="dynamic")
    )


def test_a_model_with_sliding_window_layers_keeps_transformers_own_cache(tokenizer):
    model = build_model(tokenizer, seed=0, family="mistral", sliding_window=4).eval()
    assert reserved_cache(model, reserve=8) is None
    prompts = [[11, 12, 13, 14, 15, 16], [21, 22, 23]]
    answers = {
        cache: generate_token_ids(model, tokenizer, prompts, GenerationSettings(max_new_tokens=6, cache=cache))
        for cache in ("reserved", "dynamic")
    }
    assert answers["reserved"] == answers["dynamic"]


def test_decoding_on_a_cpu_takes_sdpas_grouped_query_path_under_a_mask_and_answers_alike(model, tokenizer, monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(query, key, value, attn_mask=None, **kwargs):
        calls.append((query.shape[2], attn_mask is not None, kwargs.get("enable_gqa", False)))
        return sdpa(query, key, value, attn_mask=attn_mask, **kwargs)

    prompts = [[11, 12, 13], [21, 22, 23, 24, 25, 26, 27]]  # unequal: every decoding step has a padding mask
    monkeypatch.delenv(FORCE_GQA, raising=False)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    grouped = generate_token_ids(model, tokenizer, prompts, GenerationSettings(max_new_tokens=6))
    decoding = [call for call in calls if call[0] == 1]
    assert decoding and all(masked and gqa for _, masked, gqa in decoding)  # 2 query heads per key/value head
    assert FORCE_GQA not in os.environ  # as it was before generating

    calls.clear()
    monkeypatch.setattr(backends, "backend_for", lambda device: replace(backends.CPU, grouped_query_sdpa=False))
    packed = generate_token_ids(model, tokenizer, prompts, GenerationSettings(max_new_tokens=6))
    assert not any(gqa for length, _, gqa in calls if length == 1)  # transformers' own choice under a mask
    assert grouped == packed
