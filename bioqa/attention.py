"""Attention for LoRA training on a CPU: sdpa with its inputs in float32 while gradients flow through it.

PyTorch's CPU flash-attention kernel computes its backward in bf16 at a fixed cost of about 23 ms a call for
8 x 9 heads up to ~100 tokens, where the same backward in float32 takes 4.6 ms (the forward: 1.2 against
1.8 ms); at 480 tokens float32 is still a little faster in total (115 against 127 ms). A training step of
the demo's short examples spent a quarter of its time there. Registered with transformers' attention
interface under its own name, with sdpa's masks: without gradients (evaluation loss, generation), and for
other dtypes or devices, it is transformers' sdpa unchanged.
"""

from __future__ import annotations

from typing import Any

NAME = "sdpa_float32_backward"


def float32_backward_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """transformers' sdpa attention; in float32 (outside autocast) when a half-precision query needs gradients."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not (query.requires_grad and query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):  # CPU autocast would cast sdpa's inputs back to bf16
        output, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
    return output.to(query.dtype), weights


def train_with_float32_backward(model: Any, device: str) -> None:
    """On a CPU, a model that attends with sdpa attends with `float32_backward_sdpa` instead (from now on)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if device != "cpu" or getattr(model.config, "_attn_implementation", None) != "sdpa":
        return
    AttentionInterface.register(NAME, float32_backward_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
