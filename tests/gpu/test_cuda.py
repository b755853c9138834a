"""On a CUDA GPU: the device choice, bf16 generation and its caches, padding-free flash-attention batches,
and a training run as a user starts it. Skipped where no GPU is visible (tests/gpu/conftest.py)."""

import importlib.util
import json

import pytest
import torch

from bioqa import prompts
from bioqa.devices import choose_device
from bioqa.generation import GenerationSettings, generate_token_ids
from bioqa.loss import AnswerOnlyCollator
from bioqa.precision import computing_in
from helpers import TRAIN, prompt_args, run_cli, run_flags
from tiny_models import build_model, qa_rows

pytestmark = pytest.mark.cuda


def test_auto_chooses_cuda_with_its_fast_dtype():
    choice = choose_device()
    native = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert choice.device == "cuda" and choice.weights_dtype == choice.generation_dtype == native


@pytest.mark.parametrize("cache", ["reserved", "static", "compiled"])
def test_reserved_static_and_compiled_caches_answer_as_the_dynamic_one(tokenizer, cache):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    batch = [prompts.prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in qa_rows(8)]
    model = build_model(tokenizer, seed=3).to("cuda")
    answers = {}
    for kind in ("dynamic", cache):
        with computing_in(model, "bfloat16"):
            settings = GenerationSettings(max_new_tokens=10, batch_size=4, cache=kind)
            answers[kind] = generate_token_ids(model, tokenizer, batch, settings)
    assert answers[cache] == answers["dynamic"]


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash-attn is not installed")
def test_padding_free_flash_attention_matches_padded_batches(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    features, _ = prompts.encode_dataset(tokenizer, fmt, qa_rows(4, seed=2), 256)
    model = build_model(tokenizer, seed=4, attn_implementation="flash_attention_2").to("cuda", torch.bfloat16)
    padded = AnswerOnlyCollator(tokenizer)(features)
    packed = AnswerOnlyCollator(tokenizer, padding_free=True)(features)
    with torch.no_grad():
        padded_logits = model(input_ids=padded["input_ids"].cuda(), attention_mask=padded["attention_mask"].cuda())
        packed_logits = model(input_ids=packed["input_ids"].cuda(), position_ids=packed["position_ids"].cuda())
    start = 0
    for row, feature in enumerate(features):
        end = start + len(feature["input_ids"])
        torch.testing.assert_close(
            packed_logits.logits[0, start:end], padded_logits.logits[row, : end - start], atol=5e-2, rtol=5e-2
        )
        start = end


def test_a_training_run_on_the_gpu(tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "out"
    result = run_cli(*run_flags(tiny_model_dir, qa_file, out), *TRAIN, "--do_predict", "--device", "cuda")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["device"]["device"] == "cuda" and manifest["final_metrics"]["eval_rougeL"] >= 0
    assert json.loads((out / "predict_metrics.json").read_text())["generation"]["dtype"] in ("bfloat16", "float16")
