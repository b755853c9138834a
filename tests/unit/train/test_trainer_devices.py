"""The Trainer where the GPUs are: one GPU per process without a launcher (never nn.DataParallel), and
`--use_liger_kernel` with the answer-only loss, run through liger-kernel's own Python entry points (its monkey
patch, `lce_forward`, `LigerForCausalLMLoss`) with only the Triton kernel replaced by the same sum in torch."""

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import TrainingArguments

from bioqa.data import prompts
from bioqa.recipe import parse_recipe as parse
from bioqa.train.loss import AnswerOnlyCollator
from bioqa.train.trainer import BioQATrainer
from bioqa.training import build_trainer
from helpers import prompt_args
from tiny_models import build_model, qa_rows


def adapter_model(tokenizer):
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(build_model(tokenizer, seed=1), config)


def test_a_process_not_launched_distributed_trains_on_one_gpu(tokenizer, tmp_path, caplog):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, report_to="none")
    args._n_gpu = 4  # what transformers counts on a host with four visible GPUs and no launcher
    assert args.train_batch_size == 16  # the Trainer would batch for nn.DataParallel over the four
    trainer = BioQATrainer(model=adapter_model(tokenizer), args=args)
    assert args.n_gpu == 1 and trainer._train_batch_size == 4
    assert not isinstance(trainer._wrap_model(trainer.model), torch.nn.DataParallel)
    assert "4 GPUs are visible but this process was not launched distributed" in caplog.text
    assert "start it with torchrun or accelerate launch, one process per GPU" in caplog.text


def test_the_answer_positions_stay_whole_for_a_model_computing_its_loss(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    features, _ = prompts.encode_dataset(tokenizer, fmt, qa_rows(4), 256)
    batch = AnswerOnlyCollator(tokenizer, shift_labels=True)(features)
    keep = batch["logits_to_keep"]
    assert batch["shift_labels"].shape == (4, len(keep))
    assert torch.equal(batch["shift_labels"], batch["labels"][:, keep + 1]) and (batch["shift_labels"] != -100).any()
    assert "shift_labels" not in AnswerOnlyCollator(tokenizer)(features)  # the default: the Trainer's loss function


@pytest.fixture
def liger_in_torch(monkeypatch):
    """Liger's fused linear cross-entropy with its Triton kernel replaced by the same sum in torch (no GPU here);
    every call's hidden states are recorded."""
    import liger_kernel.transformers.functional as liger

    calls = []

    def fused_linear_cross_entropy(input, weight, target, *args, ignore_index=-100, reduction="mean", **kwargs):
        calls.append(tuple(input.shape))
        logits = (input @ weight.T).float()
        return torch.nn.functional.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction)

    monkeypatch.setattr(liger, "liger_fused_linear_cross_entropy", fused_linear_cross_entropy)
    return calls


def trained_losses(tokenizer, tmp_path, liger: bool, batches: list | None = None) -> tuple[list, float]:
    """Two steps and an evaluation through the command's own Trainer set-up, with or without --use_liger_kernel;
    each collated batch's (rows x kept positions, rows x width) is added to `batches`."""
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    features, _ = prompts.encode_dataset(tokenizer, fmt, qa_rows(16), 256)
    data = Dataset.from_list(features)
    flags = ["--output_dir", str(tmp_path / str(liger)), "--use_cpu", "--max_steps", "2", "--logging_steps", "1"]
    flags += ["--per_device_train_batch_size", "8", "--learning_rate", "1e-2", "--report_to", "none"]
    flags += ["--eval_strategy", "no", "--save_strategy", "no"]
    if liger:  # only the fused cross-entropy: Liger's norm, RoPE and SwiGLU kernels have no torch stand-in here
        config = '{"rope": false, "swiglu": false, "rms_norm": false, "fused_linear_cross_entropy": true}'
        flags += ["--use_liger_kernel", "--liger_kernel_config", config]
    trainer = build_trainer(
        parse(flags), adapter_model(tokenizer), tokenizer, {"train": data, "validation": data}, None
    )
    collate = trainer.data_collator

    def recorded(features):
        batch = collate(features)
        rows, width = batch["input_ids"].shape
        (batches if batches is not None else []).append((rows * len(batch["logits_to_keep"]), rows * width))
        return batch

    trainer.data_collator = recorded
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses, trainer.evaluate()["eval_loss"]


def test_liger_trains_and_evaluates_on_the_answer_only_loss(tokenizer, tmp_path, liger_in_torch):
    plain = trained_losses(tokenizer, tmp_path, liger=False)
    assert not liger_in_torch
    batches = []
    with_liger = trained_losses(tokenizer, tmp_path, liger=True, batches=batches)
    assert with_liger[0] == pytest.approx(plain[0], rel=1e-5) and with_liger[1] == pytest.approx(plain[1], rel=1e-5)
    # Liger's loss ran for both steps and the evaluation (which asked it to skip the logits), each time over the
    # answer positions only: batch x kept positions, not every position of the batch
    assert len(liger_in_torch) == 2 + 2 and [rows for rows, _ in liger_in_torch] == [kept for kept, _ in batches]
    assert all(kept < positions for kept, positions in batches)
