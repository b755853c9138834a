"""Prompts run in batches, for generation and label scoring alike: longest first, left-padded, and halved after an
out-of-memory error instead of losing the run.

Sorting by length puts prompts of similar length together (little padding) and the longest batch first, so an
out-of-memory error comes at once, not after minutes. On one, the allocator's cache is emptied and the same prompts
are run again in batches of half the size, which then holds for the rest of the call (logged with the size to
start from); a prompt that does not fit alone is a RunError naming what to lower.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bioqa.errors import RunError, option
from bioqa.generate import backends
from bioqa.hardware import out_of_memory, release_memory

log = logging.getLogger("bioqa")


class OutOfMemory(RunError):
    """Even one prompt at a time did not fit in the device's memory."""


def left_padded(batch: Sequence[Sequence[int]], pad_id: int, device: Any):
    """Input ids and attention mask of prompts left-padded to the longest (decoder-only models go on from the
    right end)."""
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def pad_id_of(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def by_length_in_batches(
    prompts: Sequence[Sequence[int]],
    batch_size: int,
    run: Callable[[list], list],
    device: Any,
    what: str,
    progress: bool = False,
) -> list:
    """`run(batch)` (one result per prompt of the batch) over every prompt, longest first, in batches of
    `batch_size`, halved after an out-of-memory error; the results in the order of `prompts`."""
    from tqdm.auto import tqdm

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    results: list = [None] * len(prompts)
    start, size = 0, batch_size
    with tqdm(total=len(order), desc=what, disable=not progress, unit="prompt") as bar:
        while start < len(order):
            rows = order[start : start + size]
            try:
                outputs = run([prompts[i] for i in rows])
            except Exception as exc:  # only an allocation failure is handled here; the rest goes on up
                if not out_of_memory(exc):
                    raise
                outputs = None  # leaving the except block drops the traceback and with it the batch's tensors
            if outputs is None:
                # from the rows that ran, not the size asked for: 5 prompts at a size of 32 go on at 2, not 16
                size = halved(len(rows), len(prompts[rows[0]]), getattr(device, "type", device), what)
                continue
            for row, output in zip(rows, outputs):
                results[row] = output
            start += len(rows)
            bar.update(len(rows))
    return results


def halved(size: int, prompt_tokens: int, device: str, what: str) -> int:
    """The batch size to go on with after an out-of-memory error at `size`; at 1, an OutOfMemory error."""
    release_memory(device)
    if size == 1:
        raise OutOfMemory(
            f"out of {device} memory {what}, even with {option('generation_batch_size')} 1 (a prompt of "
            f"{prompt_tokens} tokens); lower {option('generation_max_new_tokens')} or {option('max_seq_length')}, "
            "or free the device's memory (other processes, a smaller model, a 4-bit base)"
        )
    log.warning(
        "out of %s memory %s %d prompts at once: going on in batches of %d (%s %d starts there)",
        device,
        what,
        size,
        size // 2,
        option("generation_batch_size"),
        size // 2,
    )
    return size // 2


@contextmanager
def contiguous_head_input(model: Any) -> Iterator[None]:
    """The language-model head gets a contiguous input inside the block, where the device's backend has it. A
    prefill (or the scoring of labels after a prompt) projects only the last position, a strided view of the
    hidden states, and torch's CPU matmul then copies the head's weight once per row of the batch to multiply it
    (8 rows x 576 x 49,152 for SmolLM2): 20% of a PubMedQA prefill of 16 prompts (docs/BENCHMARKS.md), where
    copying the positions costs next to nothing."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not backends.backend_for(model.device.type).contiguous_head:
        yield
        return
    handle = head.register_forward_pre_hook(_contiguous_inputs)
    try:
        yield
    finally:
        handle.remove()


def _contiguous_inputs(module: Any, args: tuple) -> tuple:
    return tuple(arg.contiguous() if hasattr(arg, "contiguous") else arg for arg in args)
