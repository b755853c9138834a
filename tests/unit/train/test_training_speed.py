"""A training step without needless work: no dense mask for right padding, no float32 copies of LoRA inputs."""

import copy
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from bioqa.data import prompts
from bioqa.train.loss import AnswerOnlyCollator, answer_only_loss, needs_attention_mask, only_right_padding
from helpers import prompt_args
from tiny_models import lora_model, qa_rows


@pytest.fixture(scope="module")
def features(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    encoded, _ = prompts.encode_dataset(tokenizer, fmt, qa_rows(5, seed=3), 256)
    assert len({len(f["input_ids"]) for f in encoded}) > 1  # lengths differ: the batch pads
    return encoded


def test_only_right_padding():
    assert only_right_padding(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert not only_right_padding(torch.tensor([[1, 1, 1], [0, 1, 1]]))  # left padding
    assert not only_right_padding(torch.tensor([[1, 0, 1]]))  # a hole
    assert not only_right_padding(None)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_right_padded_batch_without_its_mask_gives_each_example_the_same_logits_and_loss(
    tokenizer, features, attention
):
    masked = AnswerOnlyCollator(tokenizer, keep_attention_mask=True)(features)
    bare = AnswerOnlyCollator(tokenizer)(features)
    assert "attention_mask" in masked and "attention_mask" not in bare
    assert torch.equal(masked["input_ids"], bare["input_ids"]) and torch.equal(masked["labels"], bare["labels"])
    model = lora_model(tokenizer, seed=6, attn_implementation=attention).eval()
    with torch.no_grad():
        full = {
            name: model(input_ids=b["input_ids"], attention_mask=b.get("attention_mask"))
            for name, b in (("masked", masked), ("bare", bare))
        }
        kept = {
            name: model(**{k: v for k, v in b.items() if k != "labels"})
            for name, b in (("masked", masked), ("bare", bare))
        }
    real = masked["attention_mask"].bool()
    torch.testing.assert_close(full["bare"].logits[real], full["masked"].logits[real], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full["bare"].logits[~real], full["masked"].logits[~real])  # padding differs: it ran
    losses = [answer_only_loss(kept[name], masked["labels"]).item() for name in ("masked", "bare")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_left_padding_and_flash_attention_keep_the_mask(tokenizer, features):
    left = copy.deepcopy(tokenizer)
    left.padding_side = "left"
    assert "attention_mask" in AnswerOnlyCollator(left)(features)
    assert "attention_mask" in AnswerOnlyCollator(tokenizer, keep_attention_mask=True)(features)
    assert needs_attention_mask(SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2")))
    assert not needs_attention_mask(SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa")))


def trainer_for(model, tmp_path, **overrides):
    from transformers import TrainingArguments

    from bioqa.train.trainer import BioQATrainer

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **overrides)
    return BioQATrainer(model=model, args=args, compute_loss_func=answer_only_loss)


def lora_layers(model):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def test_mixed_precision_steps_skip_peft_input_casts_with_the_same_loss_and_gradients(tokenizer, features, tmp_path):
    """Under autocast every LoRA product runs in bf16 whether or not PEFT first copies its input to float32."""
    batch = AnswerOnlyCollator(tokenizer)(features)
    model = lora_model(tokenizer, seed=6, dtype="bfloat16")  # a bf16 base, the adapter in float32
    trainer = trainer_for(model, tmp_path, bf16=True)
    results = []
    for use_trainer in (False, True):
        model.zero_grad()
        stack = trainer.compute_loss_context_manager() if use_trainer else nullcontext()
        with stack, torch.autocast("cpu", dtype=torch.bfloat16):
            if use_trainer:
                assert not any(layer.cast_input_dtype_enabled for layer in lora_layers(model))
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        assert {g.dtype for g in grads} == {torch.float32}
        results.append((loss.item(), grads))
    assert all(layer.cast_input_dtype_enabled for layer in lora_layers(model))  # PEFT's default is back
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
    for cast, plain in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(plain, cast, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("overrides", [{}, {"bf16": True, "activation_checkpointing": True}])
def test_peft_input_casts_stay_without_autocast_or_with_activation_checkpointing(tokenizer, tmp_path, overrides):
    model = lora_model(tokenizer, seed=6)
    with trainer_for(model, tmp_path, **overrides).compute_loss_context_manager():
        assert all(layer.cast_input_dtype_enabled for layer in lora_layers(model))
