"""bench/bench_decoding.py: its probes act on the right rows of a padded batch (they back numbers in BENCHMARKS)."""

import argparse
import importlib

import pytest

from bioqa.data import prompts
from bioqa.generate.generation import GenerationSettings, generate_token_ids
from helpers import ROOT, prompt_args
from tiny_models import build_model, qa_rows


@pytest.fixture
def bench_decoding(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = importlib.import_module("bench_decoding")
    monkeypatch.setattr(module, "negative_prompts", {})
    monkeypatch.setattr(module, "boosted_tokens", {})
    return module


def probe(bench_decoding, tokenizer, batch_size, **change):
    """Guided answers to eight prompts with context, `batch_size` prompts per generate() call."""
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    rows = [row for row in qa_rows(16) if row["context"]][:8]
    _, ids = bench_decoding.with_negatives(tokenizer, fmt, rows, 512, 16)  # records each prompt's twin and tokens
    args = argparse.Namespace(**{"context_guidance": None, "context_boost": None, **change})
    model = build_model(tokenizer, seed=3)
    model.generate = bench_decoding.guided_generate(model.generate, args)
    return generate_token_ids(model, tokenizer, ids, GenerationSettings(max_new_tokens=16, batch_size=batch_size))


@pytest.mark.parametrize("change", [dict(context_guidance=3.0), dict(context_boost=3.0)])
def test_probes_change_answers_and_follow_their_rows_through_padding(bench_decoding, tokenizer, change):
    batched = probe(bench_decoding, tokenizer, 8, **change)
    assert batched == probe(bench_decoding, tokenizer, 1, **change)  # each row guided by its own negative / tokens
    assert batched != probe(bench_decoding, tokenizer, 8)  # the change does act
