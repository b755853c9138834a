"""Attention on a CPU: sdpa in float32 while gradients flow, one-token bf16 queries as matrix products over the
whole reserved cache, transformers' sdpa otherwise."""

import pytest
import torch

from bioqa.generate.attention import NAME, cpu_sdpa, one_token_attention, use_cpu_attention
from bioqa.generate.generation import GenerationSettings, generate_token_ids
from tiny_models import build_model


@pytest.fixture
def sdpa_inputs(monkeypatch):
    """The dtype of every query the sdpa kernel receives."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(query, *args, **kwargs):
        seen.append(query.dtype)
        return sdpa(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    return seen


def batch(tokenizer):
    ids = torch.randint(5, len(tokenizer), (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding: the masked path too
    return ids, mask


def test_float32_while_gradients_flow_and_sdpa_unchanged_without(tokenizer, sdpa_inputs):
    model = build_model(tokenizer, seed=2).to(torch.bfloat16)
    ids, mask = batch(tokenizer)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    use_cpu_attention(model, "cpu")
    assert model.config._attn_implementation == NAME
    sdpa_inputs.clear()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)  # no gradients: sdpa as it was
    assert sdpa_inputs == [torch.bfloat16] * 2
    sdpa_inputs.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the Trainer runs a bf16 step
        out = model(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    assert sdpa_inputs == [torch.float32] * 2  # each layer's attention, autocast or not
    assert out.logits.dtype == torch.bfloat16 and all(p.grad is not None for p in model.parameters())


def test_output_and_gradients_are_float32_attention_rounded_to_the_inputs_dtype():
    from types import SimpleNamespace

    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, h, 7, 8, generator=generator, dtype=torch.bfloat16) for h in (4, 2, 2))
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    exact = [t.float().requires_grad_() for t in (q, k, v)]
    layer = SimpleNamespace(is_causal=True, num_key_value_groups=2, training=False)
    out, _ = cpu_sdpa(layer, *ours, None)
    ref = torch.nn.functional.scaled_dot_product_attention(*exact, is_causal=True, enable_gqa=True).transpose(1, 2)
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref.to(torch.bfloat16))
    g = torch.randn(out.shape, generator=generator, dtype=torch.bfloat16)
    out.backward(g)
    ref.backward(g.float())
    for mine, theirs in zip(ours, exact, strict=True):
        assert mine.grad.dtype == torch.bfloat16 and torch.equal(mine.grad, theirs.grad.to(torch.bfloat16))


@pytest.mark.parametrize("device, attention", [("cuda", "sdpa"), ("mps", "sdpa"), ("cpu", "eager")])
def test_other_devices_and_attention_kernels_are_left_alone(tokenizer, device, attention):
    model = build_model(tokenizer)
    model.set_attn_implementation(attention)
    use_cpu_attention(model, device)
    assert model.config._attn_implementation == attention


def grouped_inputs(dtype, length=7):
    generator = torch.Generator().manual_seed(4)
    q = torch.randn(3, 4, 1, 8, generator=generator)  # 4 query heads, 2 per key/value head
    k, v = (torch.randn(3, 2, length, 8, generator=generator) for _ in range(2))
    mask = torch.ones(3, 1, 1, length, dtype=torch.bool)
    mask[0, ..., :3] = mask[2, ..., 5:] = False  # left padding, and a masked tail (unfilled room)
    return [t.to(dtype) for t in (q, k, v)], mask


def test_a_one_token_query_attends_as_float32_sdpa_does_with_grouped_heads_and_masks():
    (q, k, v), mask = grouped_inputs(torch.bfloat16)
    exact = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=True
    ).transpose(1, 2)
    out, weights = one_token_attention(q, k, v, mask, scaling=None)
    assert weights is None and out.shape == (3, 1, 4, 8) and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), exact, atol=2e-2, rtol=2e-2)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    assert torch.equal(one_token_attention(q, k, v, additive, scaling=None)[0], out)
    per_head = mask.expand(3, 4, 1, 7)  # a mask with a row per query head
    assert torch.equal(one_token_attention(q, k, v, per_head, scaling=None)[0], out)
    scaled = one_token_attention(q, k, v, mask, scaling=0.5)[0]
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=True, scale=0.5
    ).transpose(1, 2)
    torch.testing.assert_close(scaled.float(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
    "dtype, length, expected", [(torch.bfloat16, 1, True), (torch.float32, 1, False), (torch.bfloat16, 5, False)]
)
def test_only_one_token_bf16_queries_without_gradients_take_the_matrix_products(monkeypatch, dtype, length, expected):
    from types import SimpleNamespace

    import bioqa.generate.attention as attention

    taken = []
    monkeypatch.setattr(attention, "one_token_attention", lambda *args: taken.append(args) or (None, None))
    (q, k, v), mask = grouped_inputs(dtype)
    q = q.expand(3, 4, length, 8)
    layer = SimpleNamespace(is_causal=True, num_key_value_groups=2, training=False)
    cpu_sdpa(layer, q, k, v, None if length > 1 else mask, dropout=0.0, scaling=None)
    assert bool(taken) == expected
    taken.clear()
    cpu_sdpa(layer, q[:, :, :1], k, v, mask, dropout=0.0, position_bias=torch.zeros(3, 4, 1, 7))
    assert not taken  # what the products do not handle goes to sdpa


def test_bf16_generation_decodes_over_the_whole_reserved_cache_with_sdpas_answers(tokenizer, monkeypatch):
    import bioqa.generate.attention as attention

    model = build_model(tokenizer, seed=5).to(torch.bfloat16).eval()
    prompts = [[11, 12, 13], [21, 22, 23, 24, 25, 26, 27], [31, 32, 33, 34]]
    settings = GenerationSettings(max_new_tokens=8, min_new_tokens=8, batch_size=3, dtype="bfloat16")
    expected = generate_token_ids(model, tokenizer, prompts, settings)  # transformers' sdpa
    keys = []
    products = attention.one_token_attention

    def recording(query, key, *args):
        keys.append((key.shape[2], key.is_contiguous()))
        return products(query, key, *args)

    monkeypatch.setattr(attention, "one_token_attention", recording)
    use_cpu_attention(model, "cpu")
    assert generate_token_ids(model, tokenizer, prompts, settings) == expected
    # 8 one-token steps (each prompt's last token, then 7 answer tokens) x 2 layers, each over the whole buffer:
    # the widest prompt but its last token, plus room for 8
    assert keys == [(6 + 8, True)] * 16
