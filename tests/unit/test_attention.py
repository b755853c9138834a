"""Training attention on a CPU: sdpa in float32 while gradients flow, transformers' sdpa otherwise."""

import pytest
import torch

from bioqa.attention import NAME, train_with_float32_backward
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
    train_with_float32_backward(model, "cpu")
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

    from bioqa.attention import float32_backward_sdpa

    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, h, 7, 8, generator=generator, dtype=torch.bfloat16) for h in (4, 2, 2))
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    exact = [t.float().requires_grad_() for t in (q, k, v)]
    layer = SimpleNamespace(is_causal=True, num_key_value_groups=2, training=False)
    out, _ = float32_backward_sdpa(layer, *ours, None)
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
    train_with_float32_backward(model, device)
    assert model.config._attn_implementation == attention
