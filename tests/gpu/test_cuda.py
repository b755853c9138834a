"""On a CUDA GPU: the device choice, generation and its caches, padding-free flash-attention batches, training runs
as a user starts them (bf16 or fp16, 4-bit QLoRA and its merge), and what an evaluation costs in memory. Skipped
where no GPU is visible (tests/gpu/conftest.py); `pytest -m cuda tests/gpu` runs them."""

import importlib.util
import json

import pytest
import torch

from bioqa.data import prompts
from bioqa.devices import choose_device
from bioqa.generate.generation import Answering, GenerationSettings, answer_prompts, generate_token_ids
from bioqa.generate.precision import computing_in
from bioqa.train.loss import AnswerOnlyCollator
from helpers import TRAIN, prompt_args, run_cli, run_flags
from tiny_models import build_model, lora_model, qa_rows

pytestmark = pytest.mark.cuda


def native_dtype() -> str:
    """What the GPU computes natively, from its compute capability (not torch.cuda.is_bf16_supported(), which also
    counts a T4's emulation)."""
    return "bfloat16" if torch.cuda.get_device_capability()[0] >= 8 else "float16"


def test_auto_chooses_cuda_with_its_native_dtype():
    choice = choose_device()
    assert choice.device == "cuda" and choice.weights_dtype == choice.generation_dtype == native_dtype()


@pytest.fixture(scope="module")
def prompt_batch(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    return [prompts.prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in qa_rows(8)]


@pytest.mark.parametrize("cache", ["reserved", "static", "compiled"])
def test_each_cache_answers_as_the_dynamic_one(tokenizer, prompt_batch, cache):
    """Exactly in float32 (compiled: inductor fuses the float32 sums another way, so most); in bf16 the rounding
    follows each cache's shapes, so a near-tied greedy choice may flip (bioqa.generate.kv_cache): most answers agree."""
    model = build_model(tokenizer, seed=3).to("cuda")
    for dtype, agreeing in (("float32", 0.75 if cache == "compiled" else 1.0), ("bfloat16", 0.75)):
        answers = {}
        for kind in ("dynamic", cache):
            with computing_in(model, dtype):
                settings = GenerationSettings(max_new_tokens=10, batch_size=4, cache=kind)
                answers[kind] = generate_token_ids(model, tokenizer, prompt_batch, settings)
        same = sum(a == b for a, b in zip(answers[cache], answers["dynamic"])) / len(prompt_batch)
        assert same >= agreeing, (dtype, answers)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash-attn is not installed")
def test_padding_free_flash_attention_matches_padded_batches(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    features, _ = prompts.encode_dataset(tokenizer, fmt, qa_rows(4, seed=2), 256)
    model = build_model(tokenizer, seed=4, attn_implementation="flash_attention_2").to("cuda", torch.bfloat16)
    padded = AnswerOnlyCollator(tokenizer, keep_attention_mask=True)(features)  # as the command gives flash-attn
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


def trained_run(tiny_model_dir, qa_file, out, *flags):
    flags = ("--do_train", "--do_predict", "--device", "cuda", *flags)  # --do_predict alone would only predict
    result = run_cli(*run_flags(tiny_model_dir, qa_file, out), *TRAIN, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "run_manifest.json").read_text())
    predicted = json.loads((out / "predict_metrics.json").read_text())
    print(f"{' '.join(flags[4:]) or 'defaults'}: peak GPU memory {manifest['peak_memory_mb']['device']} MB")
    return manifest, predicted


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_a_training_run_on_the_gpu(tiny_model_dir, qa_file, tmp_path, precision):
    manifest, predicted = trained_run(tiny_model_dir, qa_file, tmp_path / "out", "--precision", precision)
    expected = native_dtype() if precision == "auto" else "float16"
    assert manifest["device"]["device"] == "cuda" and manifest["device"]["weights_dtype"] == expected
    assert manifest["final_metrics"]["eval_num_examples"] > 0 and manifest["peak_memory_mb"]["device"] > 0
    generation = predicted["generation"]
    assert (generation["cache"], generation["fold_lora"]) == ("dynamic", False)  # transformers' own path on CUDA


@pytest.mark.slow
def test_qlora_trains_generates_in_its_compute_dtype_and_merges(tiny_model_dir, qa_file, tmp_path):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "qlora"
    manifest, predicted = trained_run(tiny_model_dir, qa_file, out, "--load_in_4bit")
    assert predicted["generation"]["dtype"] == native_dtype()  # not float32: the layers' compute dtype
    assert manifest["peak_memory_mb"]["device"] > 0
    merged = run_cli(
        "--adapter_dir", str(out), "--output_dir", str(tmp_path / "merged"), script="merge_base_and_adapt_ft_models.py"
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert json.loads((tmp_path / "merged" / "merge_report.json").read_text())["verification"]["passed"] is True


def test_an_evaluation_on_the_gpu_does_not_copy_the_adapted_weights_by_default(tokenizer, prompt_batch):
    """The default on CUDA generates through PEFT's adapter layers; folding, asked for, costs a copy of every
    adapted weight while it generates: the peak memory of the two differs by about that."""
    # frozen weights in bf16, as the command loads them on a GPU with bf16 (a float32 base would be cast anyway)
    model = lora_model(tokenizer, dtype="bfloat16", hidden_size=1024, intermediate_size=2816, num_hidden_layers=8)
    model = model.to("cuda").requires_grad_(False)
    adapted = sum(m.base_layer.weight.numel() for m in model.modules() if hasattr(m, "base_layer")) * 2  # in bf16
    peaks = {}
    for fold in (None, True):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        how = Answering(GenerationSettings(max_new_tokens=8, batch_size=8, dtype="bfloat16", fold_lora=fold))
        answer_prompts(model, tokenizer, prompt_batch, how)
        peaks[fold] = torch.cuda.max_memory_allocated() - before
    print(
        f"evaluation peak above the model: {peaks[None] / 2**20:.0f} MB unfolded, {peaks[True] / 2**20:.0f} MB folded"
    )
    assert peaks[True] - peaks[None] > 0.8 * adapted
