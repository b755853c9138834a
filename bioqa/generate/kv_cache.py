"""A KV cache that reserves room for the answer once, instead of growing by concatenation at every token.

transformers' DynamicCache appends each decoding step's keys and values with `torch.cat`, which copies the
whole cache of every layer once per token: on a CPU that copy was 41% of a decoding step (batch 32, about
400 cached tokens; docs/BENCHMARKS.md). Its StaticCache writes in place but attends over the whole
preallocated length from the first token on, prefill included, which takes the gain back. The layer here
does both halves right: the prefill's keys and values land in a buffer with room for `reserve` more tokens,
each step writes its token in place, and attention sees a view of the filled part only, so every product and
mask is the one DynamicCache would give (tested: identical answers).

`prefilled_cache` also takes the padding out of the prefill. A batch of prompts left-padded to its longest
spent 40% of a PubMedQA prefill on padding (32 prompts, 11,792 tokens padded to 19,872) and attended through
a dense mask besides. Instead, prompts of near-equal length run together right-padded, where causal attention
needs no mask (padding after a token cannot reach it), and their keys and values are laid into the
left-padded cache that decoding goes on from. In float32 the answers are the same; in bf16 the rounding
follows the shapes of the products, so near-tied greedy choices can go the other way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers.cache_utils import DynamicCache, DynamicLayer

from bioqa import compat
from bioqa.generate.attention import reads_whole_buffers


class ReservedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of buffers with room for `reserve` tokens past the prompt.
    With `whole`, a one-token step attends over the whole buffers instead, the unfilled room masked as the future
    (StaticCache's way for decoding only): contiguous keys, which a matrix product reads without copying them
    (`bioqa.generate.attention.one_token_attention`)."""

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve = reserve
        self.whole = False  # set by `hold`, with the buffers it is about
        self._buffers: tuple[Any, Any] | None = None

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        super().lazy_initialization(key_states, value_states)
        self._buffers = None

    def update(self, key_states: Any, value_states: Any, *args, **kwargs) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        whole = self._attends_whole(key_states.shape[-2])  # decided as get_mask_sizes decided it for this step
        length = self.get_seq_length()
        needed = length + key_states.shape[-2]
        if not self._holds(key_states, needed):
            self._reallocate(key_states, needed + self.reserve)
        keys, values = self._buffers
        keys[:, :, length:needed] = key_states
        values[:, :, length:needed] = value_states
        self.keys, self.values = keys[:, :, :needed], values[:, :, :needed]
        return (keys, values) if whole else (self.keys, self.values)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        if self._attends_whole(query_length):
            return self._buffers[0].shape[-2], 0
        return super().get_mask_sizes(query_length)

    def _attends_whole(self, query_length: int) -> bool:
        """Whether this step attends over the whole buffers: a one-token step with room left in them."""
        if not (self.whole and query_length == 1 and self._buffers is not None and self.keys is not None):
            return False  # (reset() drops the keys but not the buffers)
        keys = self._buffers[0]
        return self.keys.data_ptr() == keys.data_ptr() and keys.shape[-2] > self.get_seq_length()

    def hold(self, keys: Any, values: Any, length: int, whole: bool = False) -> None:
        """Take `keys` and `values` (batch, heads, capacity, dim) as the buffers, their first `length` tokens cached;
        `whole`: one-token steps attend over all of them."""
        self.lazy_initialization(keys, values)
        self._buffers, self.whole = (keys, values), whole
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]

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
        # zeroed: a whole-buffer step weighs the unfilled room by 0, and 0 times a stray NaN would be NaN
        keys = torch.zeros((batch, heads, capacity, dim), dtype=key_states.dtype, device=key_states.device)
        values = torch.zeros_like(keys)
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
    if config.is_encoder_decoder or not compat.supports_default_dynamic_cache(model):
        return None
    cache = DynamicCache(config=config.get_text_config(decoder=True))
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [ReservedLayer(reserve) for _ in cache.layers]
    return cache


def prefilled_cache(model: Any, prompts: Sequence[Sequence[int]], pad_id: int, reserve: int) -> DynamicCache | None:
    """A reserved cache holding every prompt but its last token, left-padded as `generate` pads `prompts` (the
    padding's keys and values zero), so that `generate` on the whole prompts starts from their last token; None
    where `reserved_cache` gives none or no prompt has a token to cache."""
    import torch

    cached = [len(ids) - 1 for ids in prompts]
    length = max(cached)  # the cache's: the longest prompt but its last token
    cache = reserved_cache(model, reserve)
    if cache is None or length == 0:
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT's LoRA layers are inside
    logits = {"logits_to_keep": 1} if compat.supports_logits_to_keep(base) else {}
    buffers: list[tuple[Any, Any]] = []
    for rows in length_groups(cached):
        part = DynamicCache(config=model.config.get_text_config(decoder=True))
        group = cached[rows[0]]  # its longest
        chunk = torch.tensor([list(prompts[r][:-1]) + [pad_id] * (group - cached[r]) for r in rows])
        base(input_ids=chunk.to(model.device), past_key_values=part, use_cache=True, **logits)
        if not buffers:  # the shapes of every layer's buffers are known after the first forward
            buffers = [_zeroed(layer.keys, len(prompts), length + reserve) for layer in part.layers]
        _lay_in(buffers, part, rows, cached, length)
    whole = reads_whole_buffers(model, buffers[0][0])
    for layer, (keys, values) in zip(cache.layers, buffers):
        layer.hold(keys, values, length, whole)
    return cache


def _lay_in(buffers: list[tuple[Any, Any]], part: DynamicCache, rows: list[int], cached: list[int], end: int) -> None:
    """Each row's `cached` keys and values, from the right-padded cache `part` of their group, ending at `end` in
    the left-padded buffers."""
    for (keys, values), layer in zip(buffers, part.layers):
        for i, r in enumerate(rows):
            keys[r, :, end - cached[r] : end] = layer.keys[i, :, : cached[r]]
            values[r, :, end - cached[r] : end] = layer.values[i, :, : cached[r]]


def _zeroed(like: Any, batch: int, capacity: int) -> tuple[Any, Any]:
    """Zeroed key and value buffers for `batch` rows of `capacity` tokens, with `like`'s heads, dim and dtype."""
    import torch

    shape = (batch, like.shape[1], capacity, like.shape[3])
    keys = torch.zeros(shape, dtype=like.dtype, device=like.device)
    return keys, torch.zeros_like(keys)


def length_groups(lengths: Sequence[int], slack: float = 0.1) -> list[list[int]]:
    """Indices of `lengths`, longest first, in runs whose padding to their first is at most `slack` of their
    tokens; lengths of 0 (nothing to cache) in none."""
    groups: list[list[int]] = []
    tokens = 0
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        length = lengths[index]
        if length == 0:
            break
        if groups and lengths[groups[-1][0]] * (len(groups[-1]) + 1) <= (1 + slack) * (tokens + length):
            groups[-1].append(index)
            tokens += length
        else:
            groups.append([index])
            tokens = length
    return groups
