"""Fine-tune a causal language model with LoRA on biomedical question answering, and predict.

At every evaluation the model also *generates* answers for a fixed subset of the validation split,
scored with ROUGE / BLEU / METEOR (logged as eval_rougeL, eval_bleu, eval_meteor, ...). The output
directory receives the adapter, the tokenizer, a model card (README.md), run_config.yaml, metrics.json,
run_manifest.json, predictions/eval-step-N.jsonl (eval-final.jsonl after training) and the checkpoints. --do_predict
generates answers for the test split (with the adapter just trained, an existing
--adapter_name_or_path, a merged checkpoint or the base alone) and writes predictions.jsonl and
predict_metrics.json (with 95% bootstrap intervals).

    bioqa-train --train_file data/train.jsonl --output_dir outputs/run1    # = python load_models.py ...
    python load_models.py --train_file data/train.jsonl --output_dir outputs/run1
    python load_models.py --config configs/smollm2-135m-cpu.yaml --max_steps 50
    python load_models.py --do_predict --test_file data/test.jsonl --output_dir outputs/zero-shot
    python load_models.py --do_predict --test_file data/test.jsonl --adapter_name_or_path outputs/run1 \\
        --output_dir outputs/ft
    torchrun --nproc_per_node 2 load_models.py --config run.yaml     # or: accelerate launch ...

Every transformers TrainingArguments flag works unchanged; --help lists all options.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import transformers

from bioqa.attention import use_cpu_attention
from bioqa.cli.options import (
    argument_problems,
    device_problems,
    parse,
    wants_training,
)
from bioqa.cli.predict import answering, predict_stage, test_prompts
from bioqa.cli.run_files import (
    begin_run,
    is_main_launch_process,
    push_output,
    push_problems,
    save_outputs,
    start_writing,
)
from bioqa.cli.runner import interrupt_on_signal, run_main
from bioqa.data import Splits, load_splits
from bioqa.devices import DeviceChoice, choose_device
from bioqa.errors import InputError, Interrupted, raise_problems
from bioqa.evaluator import GenerationEvaluator
from bioqa.features import encode_splits
from bioqa.files import write_json_atomic
from bioqa.loss import AnswerOnlyCollator, answer_only_loss, needs_attention_mask
from bioqa.modeling import (
    apply_lora,
    check_target_modules,
    load_config,
    load_model,
    load_tokenizer,
    lora_rank_problem,
    resolve_model_name,
)
from bioqa.outputs import TRAINING_OUTPUT, check_not_an_input, check_output_folder, output_lock, real
from bioqa.prompts import PromptFormat, prompt_format
from bioqa.provenance import utc_now
from bioqa.recipe import Recipe, TrainingArguments
from bioqa.resume import (
    check_checkpoint_files,
    check_same_data,
    check_same_settings,
    completed_run,
    finished_step,
    resume_checkpoint,
)
from bioqa.settings import ModelArguments, RunArguments
from bioqa.sources import training_file
from bioqa.trainer import BioQATrainer, CheckpointOnSignal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("bioqa")


def resolve_precision(model_args: ModelArguments, training: TrainingArguments) -> str:
    """--precision, or what --bf16 / --fp16 asked for; contradictions are usage errors."""
    asked = "bf16" if training.bf16 else "fp16" if training.fp16 else None
    if asked and model_args.precision not in ("auto", asked):
        raise InputError(f"--{asked} contradicts --precision {model_args.precision}; give only one of them")
    return asked or model_args.precision


def with_device(training: TrainingArguments, choice: DeviceChoice) -> TrainingArguments:
    """The training arguments with the chosen device and autocast precision."""
    return replace(
        training, bf16=choice.precision == "bf16", fp16=choice.precision == "fp16", use_cpu=choice.device == "cpu"
    )


def check_output_dir(training: TrainingArguments, run: RunArguments, resume: Path | None) -> None:
    """A resumed run writes into its own folder; otherwise the folder is new, empty, or (with
    --overwrite_output_dir) an earlier run's own output, which is cleared when the run starts."""
    if resume:
        return
    check_output_folder(
        Path(training.output_dir),
        "output_dir",
        TRAINING_OUTPUT,
        run.overwrite_output_dir,
        "pass --overwrite_output_dir to replace an earlier run's output, resume with --resume_from_checkpoint latest",
    )


def run_inputs(opts: Recipe) -> dict[str, str | None]:
    """Everything the run reads: the output folder may be none of these, nor inside or around one."""
    inputs = {
        "base model": opts.model.model_name_or_path,
        "tokenizer": opts.model.tokenizer_name,
        "adapter": opts.model.adapter_name_or_path,
        "training file": opts.data.train_file,
        "validation file": opts.data.validation_file,
        "test file": opts.data.test_file,
    }
    wanted = opts.training.resume_from_checkpoint
    if wanted and Path(wanted).is_dir() and real(opts.training.output_dir) not in real(wanted).parents:
        inputs["checkpoint to resume"] = wanted  # a checkpoint of another run; one of this run's is its own
    return inputs


def report_splits(splits: Splits, training: TrainingArguments | None, predicting: bool) -> None:
    """Log the split sizes and what was dropped; every split the run needs but lacks is a usage error."""
    log.info("data: %s", ", ".join(f"{name} {size}" for name, size in splits.sizes().items()))
    if splits.labels:
        log.info("labels: %s (from %s)", ", ".join(splits.labels), splits.labels_from)
        for name, counts in splits.label_counts().items():
            if sum(counts.values()):
                log.info("%s labels: %s", name, ", ".join(f"{label} {n}" for label, n in counts.items()))
    for name, count in splits.dropped_empty.items():
        if count:
            log.warning("data: dropped %d %s examples with an empty answer", count, name)
    if splits.leaked_questions:
        log.warning(
            "data: %d questions appear in more than one split (train/validation/test leak)", splits.leaked_questions
        )
    problems = []
    if training and not splits.examples["train"]:
        problems.append("the training split is empty; give --train_file with more data or change --split_ratios")
    if training and training.eval_strategy != "no" and not splits.examples["validation"]:
        problems.append(
            f"the validation split is empty but --eval_strategy is {training.eval_strategy.value}; give "
            "--validation_file or more training data, or pass --eval_strategy no"
        )
    if predicting and not splits.examples["test"]:
        problems.append("--do_predict: the test split is empty; give --test_file, or a --train_file to split")
    raise_problems(problems)


def build_evaluator(
    opts: Recipe, choice: DeviceChoice, tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, splits: Splits
) -> GenerationEvaluator | None:
    gen = opts.generation
    if not (gen.generation_eval and splits.examples["validation"]):
        return None
    return GenerationEvaluator(
        tokenizer,
        fmt,
        splits.examples["validation"],
        answering(opts, choice, tokenizer, fmt, splits.labels),
        samples=gen.generation_eval_samples,
        seed=opts.training.seed,
        max_seq_length=opts.data.max_seq_length,
        metrics=gen.eval_metrics,
        output_dir=Path(opts.training.output_dir),
        labels=splits.labels,
    )


def build_trainer(
    opts: Recipe, model: Any, tokenizer: PreTrainedTokenizerBase, datasets: dict, evaluator: GenerationEvaluator | None
) -> BioQATrainer:
    from transformers import EarlyStoppingCallback

    callbacks = [CheckpointOnSignal()]
    if opts.run.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(opts.run.early_stopping_patience))
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


def configure_logging(training: TrainingArguments) -> None:
    """INFO from the main process, warnings from the others."""
    from transformers.training_args import trainer_log_levels

    main = is_main_launch_process()
    logging.basicConfig(
        format="[bioqa] %(levelname)s %(message)s", level=logging.INFO if main else logging.WARNING, stream=sys.stderr
    )
    level = trainer_log_levels[training.log_level if main else training.log_level_replica]
    if level != -1:  # "passive": leave transformers' own verbosity alone
        transformers.utils.logging.set_verbosity(level)


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
    evaluating = opts.training.eval_strategy != "no" or opts.generation.generation_eval
    datasets, manifest["truncation"] = encode_splits(tokenizer, fmt, splits, opts.data.max_seq_length, evaluating)
    base = load_model(opts.model, choice)
    use_cpu_attention(base, choice.device)
    model = apply_lora(base, opts.lora, opts.model.load_in_4bit, opts.training.activation_checkpointing)
    start_writing(opts, resume, manifest)
    trainer = build_trainer(opts, model, tokenizer, datasets, build_evaluator(opts, choice, tokenizer, fmt, splits))
    if resume is not None and finished_step(resume) is not None:
        train_metrics = restore_finished(trainer, resume)  # training is over: evaluate and save, train nothing
    else:
        train_metrics = trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics
    stop = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CheckpointOnSignal))
    if stop.received:
        raise interrupted(trainer, opts, manifest, stop.received)
    with interrupt_on_signal("the final evaluation and saving", resumable=True):
        save_outputs(trainer, opts, manifest, final_metrics(trainer, train_metrics))
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
        "continue with the same command plus --resume_from_checkpoint latest"
    )


def run(argv: list[str] | None) -> int:
    opts = parse(argv)
    configure_logging(opts.training)
    raise_problems(argument_problems(opts) + push_problems(opts))
    opts.model.model_name_or_path = resolve_model_name(opts.model.model_name_or_path)
    out = Path(opts.training.output_dir)
    check_not_an_input(out, "output_dir", run_inputs(opts))
    config = load_config(opts.model)
    shape = [check_target_modules(config, opts.lora.lora_target_modules), lora_rank_problem(config, opts.lora.lora_r)]
    raise_problems([p for p in shape if p])
    choice = choose_device(
        opts.model.device,
        resolve_precision(opts.model, opts.training),
        opts.model.load_in_4bit,
        opts.model.generation_dtype,
    )
    raise_problems(device_problems(opts, choice.device))
    opts = opts._replace(training=with_device(opts.training, choice))
    log.info("%s", choice.describe())
    with output_lock(out, "output_dir", enabled=is_main_launch_process()):
        return run_locked(opts, argv, choice)


def run_locked(opts: Recipe, argv: list[str] | None, choice: DeviceChoice) -> int:
    """The run, once this process holds the output folder's lock."""
    training, predicting = wants_training(opts.training), opts.training.do_predict
    resume = resume_checkpoint(opts.training.resume_from_checkpoint, opts.training.output_dir) if training else None
    if resume:
        training = check_resume(opts, resume)
        if not (training or predicting):
            return 0
    check_output_dir(opts.training, opts.run, resume)
    splits = load_splits(opts.data)
    report_splits(splits, opts.training if training else None, predicting)
    tokenizer = load_tokenizer(opts.model)
    fmt = prompt_format(tokenizer, opts.prompt)
    test = test_prompts(opts, choice, tokenizer, fmt, splits) if predicting else None
    manifest = begin_run(opts, argv, choice, splits, resume)
    trained = train(opts, choice, tokenizer, fmt, splits, manifest, resume) if training else None
    if predicting:
        predict_stage(opts, choice, trained, tokenizer, test, manifest, resume)
    if trained is not None and opts.training.push_to_hub and opts.training.process_index == 0:
        push_output(opts)  # every final file is in place: the folder is complete
    return 0


def check_resume(opts: Recipe, resume: Path) -> bool:
    """Whether there is training to do from `resume`: the same settings are required; a run that is complete
    has none (a --do_predict then uses its adapter)."""
    check_same_settings(resume, opts.settings())
    check_same_data(resume, training_file(opts.data))
    if finished_step(resume) is not None and completed_run(Path(opts.training.output_dir)):
        log.info("the run in %s is complete (%s is its last step); nothing to train", opts.training.output_dir, resume)
        opts.model.adapter_name_or_path = opts.training.output_dir
        return False
    check_checkpoint_files(resume)
    return True


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
