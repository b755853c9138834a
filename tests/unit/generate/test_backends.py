"""Each speed-up measured on a CPU is a default on the CPU only: elsewhere generation and training take transformers'
own path (the device's backend is swapped here, the boundary this CPU can reach), and folding LoRA, which costs
memory, checks the device's free memory first."""

import contextlib
import logging
import os

import pytest

from bioqa.data import prompts
from bioqa.generate import backends, kv_cache, precision
from bioqa.generate.attention import NAME, use_cpu_attention
from bioqa.generate.generation import FORCE_GQA, Answering, GenerationSettings, answer_prompts, generate_token_ids
from helpers import prompt_args
from tiny_models import build_model, lora_model, qa_rows


@pytest.fixture(scope="module")
def prompt_batch(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    return [prompts.prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in qa_rows(9)]


@pytest.mark.parametrize(
    "device, cache, fold", [("cpu", "reserved", True), ("cuda", "dynamic", False), ("mps", "dynamic", False)]
)
def test_the_defaults_are_the_devices_and_a_choice_made_stays(device, cache, fold):
    resolved = GenerationSettings().for_device(device)
    assert (resolved.cache, resolved.fold_lora) == (cache, fold)
    asked = GenerationSettings(cache="static", fold_lora=not fold).for_device(device)
    assert (asked.cache, asked.fold_lora) == ("static", not fold)


@pytest.fixture
def on_a_gpu_backend(monkeypatch):
    """This CPU with the backend CUDA and MPS get."""
    monkeypatch.setattr(backends, "backend_for", lambda device: backends.TRANSFORMERS)


def recorder(calls: list):
    """A forward hook noting, for every call of the LM head, its pre-hooks and the GQA switch at that moment."""
    return lambda module, args, output: calls.append((len(module._forward_pre_hooks), os.environ.get(FORCE_GQA)))


def test_elsewhere_generation_is_transformers_own_and_answers_the_same(
    tokenizer, prompt_batch, on_a_gpu_backend, monkeypatch
):
    model = lora_model(tokenizer)
    reserved, folded, calls = [], [], []
    monkeypatch.setattr(kv_cache, "prefilled_cache", lambda *a, **k: reserved.append(1))
    monkeypatch.setattr(precision, "lora_folded", lambda *a: folded.append(1) or contextlib.nullcontext())
    model.get_output_embeddings().register_forward_hook(recorder(calls))
    how = Answering(GenerationSettings(max_new_tokens=6, batch_size=4))
    answers = answer_prompts(model, tokenizer, prompt_batch, how).texts
    assert calls and not reserved and not folded
    assert all(hooks == 0 and gqa is None for hooks, gqa in calls)  # no contiguous-head hook, no forced GQA path
    monkeypatch.undo()  # the CPU's backend and speed-ups: the same answers in float32
    assert answer_prompts(model, tokenizer, prompt_batch, how).texts == answers


def test_on_a_cpu_every_speed_up_is_on(tokenizer, prompt_batch, monkeypatch):
    model = build_model(tokenizer, seed=3)
    reserved, calls = [], []
    original = kv_cache.prefilled_cache
    monkeypatch.setattr(kv_cache, "prefilled_cache", lambda *a, **k: reserved.append(1) or original(*a, **k))
    model.get_output_embeddings().register_forward_hook(recorder(calls))
    generate_token_ids(model, tokenizer, prompt_batch, GenerationSettings(max_new_tokens=3, batch_size=9))
    assert reserved and calls and all(hooks == 1 and gqa == "1" for hooks, gqa in calls)


def test_cpu_attention_only_on_a_cpu(tokenizer):
    for device, expected in (("cuda", "sdpa"), ("mps", "sdpa"), ("cpu", NAME)):
        model = build_model(tokenizer, seed=1, attn_implementation="sdpa")
        use_cpu_attention(model, device)
        assert model.config._attn_implementation == expected, device


@pytest.mark.parametrize("free, folds", [(10**12, True), (10_000, False), (None, True)])
def test_folding_checks_the_devices_free_memory_first(tokenizer, free, folds, monkeypatch, caplog):
    model = lora_model(tokenizer)
    monkeypatch.setattr(precision, "free_memory_bytes", lambda device: free)
    with caplog.at_level(logging.WARNING, logger="bioqa"), precision.computing_in(model, "bfloat16"):
        folded = sum(getattr(m, "_disable_adapters", False) for m in model.modules())
    assert folded == (14 if folds else 0)
    warned = [r.getMessage() for r in caplog.records if "LoRA not folded" in r.getMessage()]
    assert bool(warned) is not folds
    if warned:  # 14 projections of the tiny model in bf16, against 10 kB free
        needed = sum(m.get_base_layer().weight.numel() * 2 for m in model.modules() if precision.foldable(m))
        assert f"would take {needed / 1e9:.2f} GB of the 0.00 GB free on cpu" in warned[0]


@pytest.mark.parametrize("backend, disabled", [(backends.CPU, True), (backends.TRANSFORMERS, False)])
def test_lora_input_casts_are_left_to_peft_off_the_cpu(tokenizer, tmp_path, backend, disabled, monkeypatch):
    import peft.helpers
    from transformers import TrainingArguments

    from bioqa.train.trainer import BioQATrainer

    entered = []
    monkeypatch.setattr(backends, "backend_for", lambda device: backend)
    monkeypatch.setattr(
        peft.helpers, "disable_input_dtype_casting", lambda model: entered.append(1) or contextlib.nullcontext()
    )
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, bf16=True, report_to="none")
    trainer = BioQATrainer(model=lora_model(tokenizer), args=args)
    with trainer.compute_loss_context_manager():
        pass
    assert bool(entered) is disabled
