"""A KV cache that reserves room for the answer once, instead of growing by concatenation at every token.

transformers' DynamicCache appends each decoding step's keys and values with `torch.cat`, which copies the
whole cache of every layer once per token: on a CPU that copy was 41% of a decoding step (batch 32, about
400 cached tokens; docs/BENCHMARKS.md). Its StaticCache writes in place but attends over the whole
preallocated length from the first token on, prefill included, which takes the gain back. The layer here
does both halves right: the prefill's keys and values land in a buffer with room for `reserve` more tokens,
each step writes its token in place, and attention sees a view of the filled part only, so every product and
mask is the one DynamicCache would give (tested: identical answers).
"""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import DynamicCache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of buffers with room for `reserve` tokens past the prompt."""

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve = reserve
        self._buffers: tuple[Any, Any] | None = None

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        super().lazy_initialization(key_states, value_states)
        self._buffers = None

    def update(self, key_states: Any, value_states: Any, *args, **kwargs) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        needed = length + key_states.shape[-2]
        if not self._holds(key_states, needed):
            self._reallocate(key_states, needed + self.reserve)
        keys, values = self._buffers
        keys[:, :, length:needed] = key_states
        values[:, :, length:needed] = value_states
        self.keys, self.values = keys[:, :, :needed], values[:, :, :needed]
        return self.keys, self.values

    def _holds(self, key_states: Any, needed: int) -> bool:
        """Whether the buffers still back `self.keys` (beam reordering or batch selection replace it with a new
        tensor; cropping keeps a view of them) and have room for `needed` tokens of this batch."""
        if self._buffers is None or self.keys.numel() == 0:
            return False
        keys = self._buffers[0]
        return (
            self.keys.data_ptr() == keys.data_ptr()
            and keys.shape[0] == key_states.shape[0]
            and keys.shape[-2] >= needed
        )

    def _reallocate(self, key_states: Any, capacity: int) -> None:
        """Fresh buffers of `capacity` tokens holding what the layer has cached so far."""
        import torch

        batch, heads, _, dim = key_states.shape
        keys = torch.empty((batch, heads, capacity, dim), dtype=key_states.dtype, device=key_states.device)
        values = torch.empty_like(keys)
        length = self.get_seq_length()
        if length:
            keys[:, :, :length] = self.keys
            values[:, :, :length] = self.values
        self._buffers = (keys, values)


def reserved_cache(model: Any, reserve: int) -> DynamicCache | None:
    """A DynamicCache for `model`, built as `generate` builds its own, whose layers reserve room for `reserve` new
    tokens; None (let generate build its own) for a model whose layers are not all plain DynamicLayers (sliding
    windows, linear attention, shared KV) or that has a cache of its own kind, which this does not reproduce."""
    config = model.config
    if config.is_encoder_decoder or not model._supports_default_dynamic_cache():
        return None
    cache = DynamicCache(config=config.get_text_config(decoder=True))
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [ReservedLayer(reserve) for _ in cache.layers]
    return cache
