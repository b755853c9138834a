"""The training stage of a run: encode the splits, load the base and add the adapter, train with the
generation evaluator, and save the final files (or record where a signal stopped it)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioqa.data.features import encode_splits
from bioqa.data.prompts import PromptFormat
from bioqa.data.splits import Splits
from bioqa.devices import DeviceChoice
from bioqa.errors import Interrupted, interrupt_on_signal, resume_hint
from bioqa.generate.attention import use_cpu_attention
from bioqa.io.files import write_json_atomic
from bioqa.io.provenance import utc_now
from bioqa.prediction import answering
from bioqa.recipe import Recipe
from bioqa.run_files import save_outputs, start_writing
from bioqa.train.evaluator import GenerationEvaluator
from bioqa.train.loss import AnswerOnlyCollator, answer_only_loss, needs_attention_mask
from bioqa.train.modeling import apply_adapter, load_model, save_initial_adapter
from bioqa.train.peft_methods import peft_config
from bioqa.train.resume import finished_step
from bioqa.train.trainer import AdaLoraBudget, BioQATrainer, CheckpointOnSignal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("bioqa")


def build_evaluator(
    opts: Recipe, choice: DeviceChoice, tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, splits: Splits
) -> GenerationEvaluator | None:
    evaluation = opts.evaluation
    if not (evaluation.generation_eval and splits.examples["validation"]):
        return None
    return GenerationEvaluator(
        tokenizer,
        fmt,
        splits.examples["validation"],
        answering(opts, choice, tokenizer, fmt, splits.labels),
        samples=evaluation.generation_eval_samples,
        seed=opts.training.seed,
        max_seq_length=opts.data.max_seq_length,
        metrics=evaluation.eval_metrics,
        output_dir=Path(opts.training.output_dir),
        labels=splits.labels,
    )


def build_trainer(
    opts: Recipe, model: Any, tokenizer: PreTrainedTokenizerBase, datasets: dict, evaluator: GenerationEvaluator | None
) -> BioQATrainer:
    from transformers import EarlyStoppingCallback

    callbacks = [CheckpointOnSignal()]
    if opts.adapter.peft_method.lower() == "adalora":
        callbacks.append(AdaLoraBudget())
    if opts.evaluation.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(opts.evaluation.early_stopping_patience))
    half = opts.training.bf16 or opts.training.fp16
    # Liger's fused linear cross-entropy runs inside the model's forward, so the model computes the loss there
    model_loss = opts.training.use_liger_kernel
    collator = AnswerOnlyCollator(
        tokenizer,
        pad_to_multiple_of=8 if half else None,
        padding_free=opts.data.padding_free,
        keep_attention_mask=needs_attention_mask(model),
        shift_labels=model_loss,
    )
    # The Trainer would push every checkpoint as it is saved; the finished folder is pushed once, at the end.
    return BioQATrainer(
        model=model,
        args=replace(opts.training, push_to_hub=False),
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=collator,
        compute_loss_func=None if model_loss else answer_only_loss,
        processing_class=tokenizer,
        callbacks=callbacks,
        generation_evaluator=evaluator,
    )


def final_metrics(trainer: BioQATrainer, train_metrics: dict) -> dict:
    """Train metrics plus the evaluation of the final (or best) adapter; none when no evaluation was asked for
    (--eval_strategy no and --no_generation_eval: a pass over a large validation split can take minutes)."""
    metrics = dict(train_metrics)
    asked = trainer.args.eval_strategy != "no" or trainer.generation_evaluator is not None
    if trainer.eval_dataset is not None and asked:
        evals = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
        current = (
            evals and evals[-1].get("step") == trainer.state.global_step and not trainer.args.load_best_model_at_end
        )
        latest = evals[-1] if current else trainer.evaluate_final()
        metrics.update({k: v for k, v in latest.items() if k.startswith("eval_")})
    return metrics


def train(
    opts: Recipe,
    choice: DeviceChoice,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    splits: Splits,
    manifest: dict,
    resume: Path | None,
) -> Any:
    """Train the adapter, save the outputs, and return the trained (or best) model."""
    from transformers.trainer_utils import enable_full_determinism, set_seed

    # Seed before the adapter is created: its initial weights come from torch's RNG (the Trainer seeds later).
    if opts.training.full_determinism:
        enable_full_determinism(opts.training.seed)
    else:
        set_seed(opts.training.seed)
    evaluating = opts.training.eval_strategy != "no" or opts.evaluation.generation_eval
    all_turns = opts.data.assistant_loss == "all"
    datasets, manifest["truncation"] = encode_splits(
        tokenizer, fmt, splits, opts.data.max_seq_length, evaluating, all_turns
    )
    base = load_model(opts.model, choice)
    use_cpu_attention(base, choice.device)
    config = peft_config(opts.adapter)
    model = apply_adapter(base, config, opts.model.load_in_4bit, opts.training.activation_checkpointing)
    initial = save_initial_adapter(model, config)  # PiSSA / OLoRA: kept to save the adapter converted
    start_writing(opts, resume, manifest)
    trainer = build_trainer(opts, model, tokenizer, datasets, build_evaluator(opts, choice, tokenizer, fmt, splits))
    stop = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CheckpointOnSignal))
    if resume is not None and finished_step(resume) is not None:
        train_metrics = restore_finished(trainer, resume)  # training is over: evaluate and save, train nothing
    else:
        try:
            train_metrics = trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics
        finally:  # the Trainer ends training callbacks only on success; a notebook's Ctrl-C must work after a failure
            stop.restore_handlers()
    if stop.received:
        raise interrupted(trainer, opts, manifest, stop.received)
    with interrupt_on_signal("the final evaluation and saving", resumable=True):
        save_outputs(trainer, opts, manifest, final_metrics(trainer, train_metrics), initial)
    return trainer.model


def restore_finished(trainer: BioQATrainer, checkpoint: Path) -> dict:
    """A checkpoint at the last step: its trainer state and its adapter (or, with --load_best_model_at_end,
    the best checkpoint's), so the final evaluation and files follow without another training step."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers.trainer_callback import TrainerState

    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    best = trainer.state.best_model_checkpoint
    source = Path(best) if trainer.args.load_best_model_at_end and best and Path(best).is_dir() else checkpoint
    set_peft_model_state_dict(trainer.model, load_file(source / "adapter_model.safetensors"))
    log.info(
        "%s is the last step (%d of %d): training is complete; evaluating and saving the adapter of %s",
        checkpoint,
        trainer.state.global_step,
        trainer.state.max_steps,
        source,
    )
    return {"resumed_finished_run_from": str(checkpoint), "global_step": trainer.state.global_step}


def interrupted(trainer: BioQATrainer, opts: Recipe, manifest: dict, signal_name: str) -> Interrupted:
    """Record the interruption (the checkpoint of this step is saved) and say how to resume."""
    checkpoint = f"{opts.training.output_dir}/checkpoint-{trainer.state.global_step}"
    if trainer.is_world_process_zero():
        write_json_atomic(
            Path(opts.training.output_dir) / "run_manifest.json",
            {**manifest, "interrupted_at": utc_now(), "status": f"stopped by {signal_name}", "checkpoint": checkpoint},
        )
        trainer.record_written("run_manifest.json")
    return Interrupted(
        f"stopped by {signal_name} at step {trainer.state.global_step}; checkpoint saved in {checkpoint}; "
        + resume_hint()
    )
