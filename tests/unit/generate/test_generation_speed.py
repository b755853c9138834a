"""What makes generation fast must not change what it answers: the KV cache kinds, and generation in another
dtype with the frozen weights cast for the duration and restored."""

import copy

import pytest
import torch

from bioqa.data import prompts
from bioqa.generate.generation import (
    Answering,
    GenerationSettings,
    answer_prompts,
    cache_kwargs,
    generate_token_ids,
)
from bioqa.generate.precision import computing_in, frozen_weights_in, lora_folded
from helpers import prompt_args
from tiny_models import build_model, lora_model, qa_rows


@pytest.fixture(scope="module")
def prompt_batch(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    return [prompts.prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in qa_rows(9)]


@pytest.mark.parametrize("cache", ["static", "dynamic", "reserved"])
def test_each_cache_answers_as_one_prompt_at_a_time(tokenizer, prompt_batch, cache):
    model = build_model(tokenizer, seed=3)
    one_by_one = generate_token_ids(model, tokenizer, prompt_batch, GenerationSettings(max_new_tokens=10, batch_size=1))
    batched = generate_token_ids(
        model, tokenizer, prompt_batch, GenerationSettings(max_new_tokens=10, batch_size=4, cache=cache)
    )
    assert batched == one_by_one and all(batched)


def test_cache_keywords():
    assert cache_kwargs("dynamic") == {}
    assert cache_kwargs("static") == {"cache_implementation": "static", "disable_compile": True}
    compiled = cache_kwargs("compiled")
    assert compiled["cache_implementation"] == "static" and compiled["compile_config"]._compile_all_devices


def test_frozen_weights_are_cast_inside_and_restored_bit_for_bit(tokenizer):
    model = lora_model(tokenizer)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    storage = {name: p.data_ptr() for name, p in model.named_parameters()}
    with frozen_weights_in(model, "bfloat16"):
        dtypes = {name: p.dtype for name, p in model.named_parameters()}
        logits = model(input_ids=torch.tensor([[5, 6, 7]])).logits
    assert {dtypes[n] for n, p in model.named_parameters() if p.requires_grad} == {torch.float32}  # LoRA kept
    assert {dtypes[n] for n, p in model.named_parameters() if not p.requires_grad} == {torch.bfloat16}
    assert logits.dtype == torch.bfloat16
    for name, param in model.named_parameters():
        assert param.data_ptr() == storage[name] and torch.equal(param, before[name])  # the same memory


def test_a_4bit_bases_float32_leftovers_generate_in_the_compute_dtype_and_its_packed_weights_stay(tokenizer):
    """k-bit preparation leaves embeddings, norms and head in float32 beside the packed 4-bit weights (uint8 data
    in bitsandbytes' Params4bit): generating in the compute dtype casts the former and never touches the latter."""
    model = build_model(tokenizer, seed=3).requires_grad_(False)
    packed = model.model.layers[0].mlp.down_proj
    packed.weight = torch.nn.Parameter(torch.randint(0, 255, (64, 16), dtype=torch.uint8), requires_grad=False)
    with frozen_weights_in(model, "bfloat16"):
        dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes.pop("model.layers.0.mlp.down_proj.weight") == torch.uint8
    assert set(dtypes.values()) == {torch.bfloat16} and "model.norm.weight" in dtypes
    assert packed.weight.dtype == torch.uint8 and model.model.norm.weight.dtype == torch.float32  # restored


def test_frozen_weights_are_restored_when_the_block_fails(tokenizer):
    model = build_model(tokenizer, seed=3)
    with pytest.raises(RuntimeError, match="stop"), frozen_weights_in(model, "bfloat16"):
        raise RuntimeError("stop")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_answers_in_bf16_match_float32_mostly_and_leave_the_model_as_it_was(tokenizer, prompt_batch):
    """A bf16 cast may change a greedy choice where two tokens are nearly tied, not the model afterwards."""
    model = lora_model(tokenizer)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    answers = {}
    for dtype in ("float32", "bfloat16"):
        how = Answering(GenerationSettings(max_new_tokens=8, batch_size=4, dtype=dtype))
        answers[dtype] = answer_prompts(model, tokenizer, prompt_batch, how).texts
    assert len(answers["bfloat16"]) == len(prompt_batch) and all(answers["bfloat16"])
    assert sum(a == b for a, b in zip(*answers.values())) >= len(prompt_batch) // 2
    assert all(torch.equal(p, before[n]) and p.dtype == before[n].dtype for n, p in model.named_parameters())


def test_a_bf16_base_trains_fp32_lora_weights_to_the_loss_of_autocast_over_fp32_weights(tiny_model_dir, tokenizer):
    """The CPU's bf16 set-up (the base loaded in bf16) against casting fp32 weights under autocast at every step:
    the same matmuls in bf16, so the losses differ only by the rounding of embeddings, norms and residuals."""
    from types import SimpleNamespace

    from bioqa.devices import DeviceChoice
    from bioqa.settings import AdapterArguments
    from bioqa.train.modeling import apply_adapter, load_model
    from bioqa.train.peft_methods import peft_config

    model_args = SimpleNamespace(
        model_name_or_path=str(tiny_model_dir), trust_remote_code=False, attn_implementation=None, load_in_4bit=False
    )
    batch = torch.tensor([[3, 9, 12, 40, 41, 7, 8, 2, 30, 31]])
    losses = {}
    for weights in ("float32", "bfloat16"):
        torch.manual_seed(0)
        config = peft_config(AdapterArguments(lora_r=4, lora_alpha=8))
        model = apply_adapter(
            load_model(model_args, DeviceChoice("cpu", "bf16", weights, "test")), config, False, False
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        trained = [p for p in model.parameters() if p.requires_grad]
        frozen = [p for p in model.parameters() if not p.requires_grad]
        assert {p.dtype for p in trained} == {torch.float32}  # LoRA weights, so the optimizer's state, stay fp32
        assert {p.grad.dtype for p in trained} == {torch.float32}
        assert {p.dtype for p in frozen} == {getattr(torch, weights)} and all(p.grad is None for p in frozen)
        losses[weights] = loss.item()
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.01)


def test_the_trainers_autocast_is_set_aside_for_the_generation_dtype(tokenizer):
    """accelerate wraps a prepared model's forward in the training autocast; a float32 evaluation must not run in
    it (log-likelihood scoring calls the forward directly), and the wrapper is back afterwards."""
    import copy

    from accelerate import Accelerator

    model = lora_model(tokenizer)
    plain = copy.deepcopy(model)
    prepared = Accelerator(mixed_precision="bf16", cpu=True).prepare_model(model)
    wrapped = prepared.forward
    batch = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert not torch.equal(prepared(input_ids=batch).logits, plain(input_ids=batch).logits)  # bf16 inside
        with computing_in(prepared, "float32"):
            torch.testing.assert_close(prepared(input_ids=batch).logits, plain(input_ids=batch).logits)
    assert prepared.forward == wrapped


def lora_logits(model, ids=((5, 6, 7, 8, 9),)):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits


@pytest.mark.parametrize("use_dora", [False, True])  # DoRA is not a plain sum: left unfolded, same logits
def test_lora_folded_computes_as_the_adapter_and_leaves_it_as_it_was(tokenizer, use_dora):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, use_dora=use_dora)
    model = get_peft_model(build_model(tokenizer, seed=5), config)
    before = {name: (p.detach().clone(), p.data_ptr(), p.requires_grad) for name, p in model.named_parameters()}
    expected = lora_logits(model)
    with lora_folded(model, None):
        folded = [m for m in model.modules() if getattr(m, "_disable_adapters", False)]
        inside = lora_logits(model)
    assert len(folded) == (0 if use_dora else 2 * 7)  # the tiny model's two layers, seven projections each
    torch.testing.assert_close(inside, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lora_logits(model), expected, rtol=0, atol=0)
    for name, param in model.named_parameters():
        value, pointer, grad = before[name]
        assert param.data_ptr() == pointer and param.requires_grad == grad and torch.equal(param, value), name


def test_lora_folded_in_bf16_equals_the_merged_model_cast_to_bf16(tokenizer):
    """Folding sums in float32 and rounds once, as the merge script's checkpoint loaded in bf16 does."""
    model = lora_model(tokenizer)
    merged = copy.deepcopy(model).merge_and_unload().to(torch.bfloat16)
    with lora_folded(model, "bfloat16"):
        weights = {
            n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in model.named_parameters()
        }
        folded = [name for name, param in merged.named_parameters() if "proj" in name]
        assert len(folded) == 14 and all(torch.equal(weights[name], merged.get_parameter(name)) for name in folded)


def test_lora_folded_is_undone_when_the_block_fails(tokenizer):
    model = lora_model(tokenizer)
    expected = lora_logits(model)
    with pytest.raises(RuntimeError, match="stop"), lora_folded(model, "bfloat16"):
        raise RuntimeError("stop")
    torch.testing.assert_close(lora_logits(model), expected, rtol=0, atol=0)
    assert not any(getattr(m, "_disable_adapters", False) for m in model.modules())


@pytest.mark.parametrize("fold", [True, False])
def test_answer_prompts_folds_lora_only_when_asked(tokenizer, prompt_batch, fold):
    """Folded, the update is in the weights and no LoRA layer runs while generating; unfolded, every one does; after
    it, the model is the adapter it was."""
    model = lora_model(tokenizer)
    expected = lora_logits(model)
    calls = []
    adapters = [m for name, m in model.named_modules() if name.endswith("lora_A.default")]
    hooks = [m.register_forward_hook(lambda *args: calls.append(1)) for m in adapters]
    how = Answering(GenerationSettings(max_new_tokens=2, batch_size=4, fold_lora=fold))
    try:
        assert len(answer_prompts(model, tokenizer, prompt_batch, how).texts) == len(prompt_batch)
    finally:
        for hook in hooks:
            hook.remove()
    assert adapters and (len(calls) == 0) == fold
    torch.testing.assert_close(lora_logits(model), expected, rtol=0, atol=0)


@pytest.mark.parametrize("cache", ["dynamic", "reserved"])
def test_the_heads_input_is_contiguous_while_generating_and_the_hook_goes_after(
    tokenizer, prompt_batch, cache, monkeypatch
):
    model = build_model(tokenizer, seed=3)
    head = model.get_output_embeddings()
    seen = []
    head.register_forward_hook(lambda module, args, output: seen.append(args[0].is_contiguous()))  # as forward got it
    settings = GenerationSettings(max_new_tokens=4, batch_size=9, cache=cache)
    answers = generate_token_ids(model, tokenizer, prompt_batch, settings)
    assert seen and all(seen)
    assert not head._forward_pre_hooks  # the block's hook is gone
    seen.clear()
    without_head_hook(monkeypatch)
    assert generate_token_ids(model, tokenizer, prompt_batch, settings) == answers
    assert not all(seen)  # without it: each prefill projects the strided last position of its prompts


def without_head_hook(monkeypatch) -> None:
    """Generation and label scoring on a backend without the contiguous-head block (as on CUDA and MPS)."""
    from dataclasses import replace

    from bioqa.generate import backends

    monkeypatch.setattr(backends, "backend_for", lambda device: replace(backends.CPU, contiguous_head=False))


def test_label_scoring_projects_a_contiguous_last_position_too(tokenizer, prompt_batch, monkeypatch):
    from bioqa.generate.loglik import label_logliks

    model = build_model(tokenizer, seed=3)
    seen = []
    model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: seen.append(args[0].is_contiguous())
    )
    labels = [[11], [21, 22]]
    scores = label_logliks(model, tokenizer, prompt_batch, labels, batch_size=9)
    assert seen and all(seen)
    seen.clear()
    without_head_hook(monkeypatch)
    again = label_logliks(model, tokenizer, prompt_batch, labels, batch_size=9)
    assert [pytest.approx(row, rel=1e-5) for row in again] == scores  # one product or one per row: rounding aside
    assert not all(seen)
