"""The dtype generation computes in, and LoRA updates folded into the weights, for the duration of a block.

Frozen weights in another dtype are cast for the duration and restored bit for bit after (the same storage),
while weights being trained keep theirs and, for a half dtype, meet the input under autocast. The training
autocast accelerate wraps around a prepared model's forward is set aside meanwhile.

Each plain LoRA layer's update is folded into a copy of its frozen weight for the block and the adapter path
switched off: a decoding step then runs one matrix product per layer, not three plus the casts of the input
to the adapter's float32 and back. PEFT's own merge would change the frozen weight in place and round it
again when unmerging; folding into a copy leaves it untouched. The copy costs the adapted weights' memory
once, in the generation dtype: where that would take more than half the device's free memory (the rest is for
the batch's KV cache), the layers stay unfolded, as the log says (`folding_fits`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from bioqa import compat
from bioqa.hardware import free_memory_bytes

log = logging.getLogger("bioqa")


@contextmanager
def computing_in(model: Any, dtype: str | None, fold_lora: bool = True) -> Iterator[None]:
    """Frozen weights in `dtype` (with LoRA updates folded in, unless `fold_lora` is False), and for bf16 / fp16
    autocast too, inside the block (None: the weights' own dtype)."""
    import torch

    half = dtype in ("bfloat16", "float16")
    autocast = torch.autocast(model.device.type, getattr(torch, dtype) if half else None, enabled=half)
    folded = lora_folded(model, dtype) if fold_lora and folding_fits(model, dtype) else nullcontext()
    with folded, frozen_weights_in(model, dtype), without_training_autocast(model), autocast:
        yield


@contextmanager
def without_training_autocast(model: Any) -> Iterator[None]:
    """The model's own forward inside the block. accelerate wraps the forward of a model the Trainer prepared in
    the training precision's autocast; a direct call (log-likelihood scoring) would run in it, not in the
    generation dtype (`generate` calls the inner model and never met the wrapper)."""
    original = compat.forward_without_autocast(model)
    if original is None:
        yield
        return
    wrapped = model.forward
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


@contextmanager
def frozen_weights_in(model: Any, dtype: str | None) -> Iterator[None]:
    """Frozen floating-point weights cast to `dtype` inside the block, restored (the same tensors) after it.

    Weights being trained keep their dtype (PEFT casts a LoRA layer's input to its weights' dtype), so a bf16
    evaluation of an fp32 base never rounds the adapter or the optimizer's view of it.
    """
    import torch

    target = getattr(torch, dtype) if dtype else None
    kept = []
    try:
        for param in model.parameters() if target else ():
            if not param.requires_grad and param.is_floating_point() and param.dtype != target:
                kept.append((param, param.data))
                param.data = param.data.to(target)
        yield
    finally:
        for param, original in kept:
            param.data = original


def foldable(module: Any) -> bool:
    """A PEFT LoRA linear layer using plain LoRA (no DoRA or other variant) over a whole floating-point linear
    weight (not a shard of FSDP or ZeRO-3, not quantized): its update is exactly `get_delta_weight`."""
    import torch
    from peft.tuners.lora import Linear

    if not isinstance(module, Linear) or module.merged or module.disable_adapters:
        return False
    base, active = module.get_base_layer(), active_adapters(module)
    weights = [base.weight, *(module.lora_A[a].weight for a in active), *(module.lora_B[a].weight for a in active)]
    whole = all(type(w.data) is torch.Tensor and w.numel() > 0 for w in weights)
    plain = type(base) is torch.nn.Linear and not any(a in module.lora_variant for a in active)
    shaped = tuple(base.weight.shape) == (base.out_features, base.in_features)
    return whole and plain and shaped and base.weight.is_floating_point()


def folding_fits(model: Any, dtype: str | None) -> bool:
    """Whether the folded copies of the adapted weights take at most half the memory free on the model's device;
    if not, the log says so and generation goes through the adapter layers."""
    import torch

    weights = [m.get_base_layer().weight for m in model.modules() if foldable(m)]
    size = torch.empty((), dtype=getattr(torch, dtype)).element_size() if dtype else None
    needed = sum(w.numel() * (size or w.element_size()) for w in weights)
    free = free_memory_bytes(model.device.type)
    if not needed or free is None or needed <= free / 2:
        return True
    log.warning(
        "generation: LoRA not folded into the weights: the copies would take %.2f GB of the %.2f GB free on %s; "
        "generating through the adapter layers instead (slower, no extra memory)",
        needed / 1e9,
        free / 1e9,
        model.device.type,
    )
    return False


def active_adapters(module: Any) -> list[str]:
    """The adapters a LoRA layer adds in its forward (an active adapter may not target this layer)."""
    return [name for name in module.active_adapters if name in module.lora_A]


@contextmanager
def lora_folded(model: Any, dtype: str | None) -> Iterator[None]:
    """Each foldable LoRA layer computes with weight + update (summed in float32, then in `dtype` or the weight's
    own) and its adapter path off inside the block; the original weight tensors are back after it."""
    import torch

    kept = []
    try:
        with torch.no_grad():
            for module in [m for m in model.modules() if foldable(m)]:
                weight = module.get_base_layer().weight
                merged = weight.data.to(torch.float32, copy=True)
                for name in active_adapters(module):
                    merged += module.get_delta_weight(name).float()
                kept.append((module, weight, weight.data))
                weight.data = merged.to(getattr(torch, dtype) if dtype else weight.dtype)
                compat.set_lora_layer_disabled(module, True)
        yield
    finally:
        for module, weight, original in kept:
            weight.data = original
            compat.set_lora_layer_disabled(module, False)
