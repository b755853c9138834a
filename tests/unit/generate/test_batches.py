"""An out-of-memory error while generating or scoring labels halves the batch and gives the same answers; a prompt
that does not fit alone is one error naming what to lower. The error is injected by the test model itself: a
forward that raises torch's OutOfMemoryError, as CUDA's allocator does, for batches above a size."""

import logging

import pytest
import torch

from bioqa import hardware
from bioqa.data import prompts
from bioqa.generate import batches
from bioqa.generate.batches import OutOfMemory
from bioqa.generate.generation import GenerationSettings, generate_token_ids
from bioqa.generate.loglik import label_logliks
from helpers import prompt_args
from tiny_models import build_model, qa_rows


def fails_above(model, rows: int, error=None):
    """`model`'s forward raises, while generating or scoring (inference mode), for batches of more than `rows`."""

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if torch.is_inference_mode_enabled() and ids is not None and ids.shape[0] > rows:
            raise error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    return model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture(scope="module")
def prompt_batch(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    return [prompts.prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in qa_rows(9)]


@pytest.fixture
def released(monkeypatch):
    calls = []
    monkeypatch.setattr(batches, "release_memory", calls.append)
    return calls


@pytest.mark.parametrize("cache", ["dynamic", "reserved"])
def test_generation_halves_the_batch_and_answers_the_same(tokenizer, prompt_batch, cache, caplog, released):
    model = build_model(tokenizer, seed=3)
    settings = GenerationSettings(max_new_tokens=8, batch_size=8, cache=cache)
    expected = generate_token_ids(model, tokenizer, prompt_batch, settings)
    fails_above(model, 2)
    with caplog.at_level(logging.WARNING, logger="bioqa"):
        assert generate_token_ids(model, tokenizer, prompt_batch, settings) == expected
    halvings = [r.getMessage() for r in caplog.records if "going on in batches" in r.getMessage()]
    assert halvings == [
        "out of cpu memory generating 8 prompts at once: going on in batches of 4 (generation_batch_size 4 starts "
        "there)",
        "out of cpu memory generating 4 prompts at once: going on in batches of 2 (generation_batch_size 2 starts "
        "there)",
    ]
    assert released == ["cpu", "cpu"]  # the allocator's cache emptied before each retry


def test_fewer_prompts_than_the_batch_size_are_halved_from_their_own_count(tokenizer, prompt_batch, released, caplog):
    model = build_model(tokenizer, seed=3)
    fails_above(model, 2)
    with caplog.at_level(logging.WARNING, logger="bioqa"):
        generate_token_ids(model, tokenizer, prompt_batch[:5], GenerationSettings(max_new_tokens=4, batch_size=32))
    assert released == ["cpu"] and "generating 5 prompts at once: going on in batches of 2" in caplog.text


def test_label_scoring_halves_the_batch_too(tokenizer, prompt_batch, released):
    model = build_model(tokenizer, seed=3)
    labels = [[11], [21, 22]]
    expected = label_logliks(model, tokenizer, prompt_batch, labels, batch_size=9)
    fails_above(model, 4)  # 9 prompts fail; 4 do, then fail as 4 x 2 label rows; 2 (and 2 x 2) fit
    again = label_logliks(model, tokenizer, prompt_batch, labels, batch_size=9)
    assert [pytest.approx(row, rel=1e-5) for row in again] == expected and len(released) == 2


def test_a_prompt_that_does_not_fit_alone_is_one_error_naming_what_to_lower(tokenizer, prompt_batch, released):
    model = build_model(tokenizer, seed=3)
    fails_above(model, 0)
    with pytest.raises(OutOfMemory) as stopped:
        generate_token_ids(model, tokenizer, prompt_batch, GenerationSettings(max_new_tokens=8, batch_size=4))
    longest = max(map(len, prompt_batch))
    assert str(stopped.value).startswith(
        f"out of cpu memory generating, even with generation_batch_size 1 (a prompt of {longest} tokens); lower "
        "generation_max_new_tokens or max_seq_length"
    )
    assert released == ["cpu"] * 3  # 4 -> 2 -> 1 -> stop


def test_other_errors_are_not_taken_for_out_of_memory(tokenizer, prompt_batch, released):
    model = build_model(tokenizer, seed=3)
    fails_above(model, 2, error=RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        generate_token_ids(model, tokenizer, prompt_batch, GenerationSettings(max_new_tokens=4, batch_size=4))
    assert released == []


@pytest.mark.parametrize(
    "error, is_oom",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("MPS backend out of memory (MPS allocated: 17.84 GB, other allocations: 1.2 GB)"), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_which_errors_are_out_of_memory(error, is_oom):
    assert hardware.out_of_memory(error) is is_oom
