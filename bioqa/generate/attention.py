"""Attention on a CPU in half precision: around two slow kernels of PyTorch, transformers' sdpa otherwise.

PyTorch's CPU flash-attention kernel is slow in bf16 where it matters most here (docs/BENCHMARKS.md):
* its backward costs about 23 ms a call for 8 x 9 heads up to ~100 tokens, where the same backward in float32
  takes 4.6 ms (at 480 tokens float32 is still a little faster in total: 115 against 127 ms). While gradients
  flow through a half-precision query, sdpa runs on float32 copies of its inputs, outside autocast;
* a decoding step (one query token against the KV cache) took 8.9 ms for 32 rows x 500 cached tokens in bf16,
  against 1.0 ms for the same attention as two batched matrix products with the softmax in float32 (what
  transformers' eager attention computes, without repeating the cache for grouped-query heads). Generation in
  bf16 attends that way for one-token queries.
Registered with transformers' attention interface under its own name, with sdpa's masks; for prompts (prefill),
float32, other devices, or features sdpa handles and the product does not (position bias, soft-capping, sinks,
a paged cache, dropout), it is transformers' sdpa unchanged.
"""

from __future__ import annotations

from typing import Any

from bioqa import compat
from bioqa.generate import backends

NAME = "bioqa_cpu_sdpa"
SDPA_ONLY = ("position_bias", "softcap", "s_aux", "cache")  # keyword arguments the decoding product does not handle


def cpu_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """transformers' sdpa; in float32 when a half-precision CPU query needs gradients, as matrix products when a
    bf16 CPU query is one token (module docstring)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    on_cpu = query.device.type == "cpu"
    if on_cpu and query.requires_grad and query.dtype in (torch.bfloat16, torch.float16):
        return float32_sdpa(module, query, key, value, attention_mask, **kwargs)
    if on_cpu and query.dtype == torch.bfloat16 and query.shape[2] == 1 and decodes_plainly(kwargs):
        return one_token_attention(query, key, value, attention_mask, kwargs.get("scaling"))
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def float32_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """sdpa on float32 copies of the inputs, outside autocast; the output in the query's dtype."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):  # CPU autocast would cast sdpa's inputs back to bf16
        output, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
    return output.to(query.dtype), weights


def decodes_plainly(kwargs: dict) -> bool:
    return not kwargs.get("dropout") and all(kwargs.get(name) is None for name in SDPA_ONLY)


def one_token_attention(query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None):
    """Attention of a one-token query (batch, heads, 1, dim) over keys and values (batch, kv_heads, length, dim),
    the scores and softmax in float32; output (batch, 1, heads, dim) as transformers' attention returns it."""
    import torch

    batch, heads, _, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    # query head h attends with key/value head h // (heads // kv_heads): each key head's queries side by side
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float()
    scores.mul_(scaling if scaling is not None else dim**-0.5)
    if attention_mask is not None:
        mask = (
            attention_mask
            if attention_mask.shape[1] == 1
            else attention_mask.reshape(-1, kv_heads, heads // kv_heads, length)
        )
        if mask.dtype == torch.bool:
            scores.masked_fill_(~mask, float("-inf"))
        else:
            scores.add_(mask)
    output = torch.matmul(torch.softmax(scores, dim=-1).to(value.dtype), value)
    return output.reshape(batch, 1, heads, dim), None


def reads_whole_buffers(model: Any, keys: Any) -> bool:
    """Whether `model` attends to a one-token query over cached `keys` like these with `one_token_attention`, whose
    matrix product copies keys that are a view into a larger buffer (4.3x its time for 16 x 3 heads x 560 of 660
    tokens), so a reserved cache should hand it the whole buffers (`bioqa.generate.kv_cache.ReservedLayer`)."""
    import torch

    implementation = compat.attention_implementation(model.config)
    return implementation == NAME and keys.device.type == "cpu" and keys.dtype == torch.bfloat16


def use_cpu_attention(model: Any, device: str) -> None:
    """Where the device's backend has it (a CPU), a model that attends with sdpa attends with `cpu_sdpa` instead
    (from now on)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if not backends.backend_for(device).cpu_attention or compat.attention_implementation(model.config) != "sdpa":
        return
    AttentionInterface.register(NAME, cpu_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
