"""A run of the toolkit from a Recipe: `finetune` trains an adapter (and, with do_predict, answers the test split),
`predict` answers the test split with a base model, an adapter or a merged checkpoint. Both run `execute`, as
load_models.py does, so they write the same files.

    import bioqa
    recipe = bioqa.Recipe.from_yaml("configs/demo-smollm2-cpu.yaml", output_dir="outputs/run1")
    run = bioqa.finetune(recipe)
    run.metrics["eval_rougeL"], run.best_checkpoint
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bioqa.checks import argument_problems, device_problems, wants_training
from bioqa.data.prompts import prompt_format
from bioqa.data.sources import training_file
from bioqa.data.splits import Splits, load_splits
from bioqa.devices import DeviceChoice, choose_device
from bioqa.errors import InputError, option, raise_problems
from bioqa.forgetting import check_forgetting, forgetting_problems
from bioqa.io.outputs import TRAINING_OUTPUT, check_not_an_input, check_output_folder, output_lock, real
from bioqa.prediction import predict_stage, test_prompts
from bioqa.recipe import Recipe, TrainingArguments
from bioqa.results import Predictions, Run
from bioqa.run_files import begin_run, is_main_launch_process, push_output, push_problems, wait_for_every_process
from bioqa.settings import ModelArguments, OutputArguments
from bioqa.train.modeling import (
    check_target_modules,
    load_config,
    load_tokenizer,
    lora_rank_problem,
    resolve_model_name,
)
from bioqa.train.resume import (
    check_checkpoint_files,
    check_same_data,
    check_same_settings,
    completed_run,
    finished_step,
    resume_checkpoint,
)
from bioqa.training import train

log = logging.getLogger("bioqa")


def finetune(recipe: Recipe, *, command: Sequence[str] = ("bioqa.finetune",)) -> Run:
    """Train the recipe's adapter, as `load_models.py --do_train` does with the same settings, and return the run:
    its folder, final metrics, best checkpoint and manifest (with `do_predict`, also its test predictions).
    `command` is what run_manifest.json records as the command that made the run.

        >>> run = bioqa.finetune(recipe.replace(max_steps=20))
        >>> run.metrics["eval_rougeL"], run.validation["scores"]["rougeL"]["ci95"]
    """
    execute(recipe.replace(do_train=True), command)
    return Run(Path(recipe.training.output_dir))


def predict(
    recipe: Recipe, *, adapter: str | os.PathLike | None = None, command: Sequence[str] = ("bioqa.predict",)
) -> Predictions:
    """Answer the recipe's test split with its base model (and `adapter`, a trained run's folder, when given), as
    `load_models.py --do_predict` does; return the predictions: rows, scores with bootstrap 95% intervals, files.

        >>> zero_shot = bioqa.predict(recipe.replace(output_dir="outputs/zero-shot"))
        >>> zero_shot.scores["rougeL"]["ci95"]
    """
    changes = {"do_train": False, "do_predict": True}
    if adapter is not None:
        changes["adapter_name_or_path"] = os.fspath(adapter)
    execute(recipe.replace(**changes), command)
    return Predictions(Path(recipe.training.output_dir))


def execute(recipe: Recipe, command: Sequence[str]) -> None:
    """Check every setting, choose the device, then run (train and/or predict) holding the output folder's lock."""
    if recipe.training.seeds:
        raise InputError(
            f"a recipe with {option('seeds')} is trained once per seed (bioqa.finetune_seeds); one run takes "
            f"{option('seed')}"
        )
    recipe, choice = prepare(recipe)
    with output_lock(Path(recipe.training.output_dir), "output_dir", enabled=is_main_launch_process()):
        run_locked(recipe, command, choice)


def prepare(recipe: Recipe) -> tuple[Recipe, DeviceChoice]:
    """Every check that needs no weights, and the device: the recipe as the run will use it, and its device."""
    raise_problems(argument_problems(recipe) + push_problems(recipe) + forgetting_problems(recipe))
    recipe = recipe.replace(model_name_or_path=resolve_model_name(recipe.model.model_name_or_path))
    out = Path(recipe.training.output_dir)
    check_not_an_input(out, "output_dir", run_inputs(recipe))
    config = load_config(recipe.model)
    adapter = recipe.adapter
    shape = (
        check_target_modules(config, adapter.lora_target_modules),
        lora_rank_problem(config, adapter.lora_r) if adapter.peft_method.lower() == "lora" else None,
    )
    raise_problems([problem for problem in shape if problem])
    model = recipe.model
    choice = choose_device(
        model.device, resolve_precision(model, recipe.training), model.load_in_4bit, model.generation_dtype
    )
    raise_problems(device_problems(recipe, choice.device))
    log.info("%s", choice.describe())
    return recipe._replace(training=with_device(recipe.training, choice)), choice


def run_locked(recipe: Recipe, command: Sequence[str], choice: DeviceChoice) -> None:
    """The run, once this process holds the output folder's lock."""
    training, predicting = wants_training(recipe.training), recipe.training.do_predict
    resume = resume_checkpoint(recipe.training.resume_from_checkpoint, recipe.training.output_dir) if training else None
    if resume:
        training = check_resume(recipe, resume)
        if not training:
            if not predicting:
                return
            recipe = recipe.replace(adapter_name_or_path=recipe.training.output_dir)  # the complete run's adapter
    check_output_dir(recipe.training, recipe.output, resume)
    splits = load_splits(recipe.data)
    report_splits(splits, recipe.training if training else None, predicting)
    tokenizer = load_tokenizer(recipe.model)
    fmt = prompt_format(tokenizer, recipe.prompt)
    test = test_prompts(recipe, choice, tokenizer, fmt, splits) if predicting else None
    manifest = begin_run(recipe, command, choice, splits, resume)
    trained = train(recipe, choice, tokenizer, fmt, splits, manifest, resume) if training else None
    if predicting:
        predict_stage(recipe, choice, trained, tokenizer, test, manifest, resume)
    finished, trained = trained is not None, None  # the benchmark loads models of its own: this one can go
    if finished and recipe.evaluation.benchmark_tasks is not None:
        check_forgetting(recipe, choice)
    if finished and recipe.training.push_to_hub and recipe.training.process_index == 0:
        push_output(recipe)  # every final file is in place: the folder is complete
    wait_for_every_process()  # the main process writes the files every process's Run and Predictions read


def check_resume(recipe: Recipe, resume: Path) -> bool:
    """Whether there is training to do from `resume`: the same settings are required; a run that is complete
    has none (a prediction then uses its adapter)."""
    check_same_settings(resume, recipe.settings())
    check_same_data(resume, training_file(recipe.data))
    if finished_step(resume) is not None and completed_run(Path(recipe.training.output_dir)):
        log.info(
            "the run in %s is complete (%s is its last step); nothing to train", recipe.training.output_dir, resume
        )
        return False
    check_checkpoint_files(resume)
    return True


def resolve_precision(model_args: ModelArguments, training: TrainingArguments) -> str:
    """--precision, or what --bf16 / --fp16 asked for; contradictions are usage errors."""
    asked = "bf16" if training.bf16 else "fp16" if training.fp16 else None
    if asked and model_args.precision not in ("auto", asked):
        raise InputError(
            f"{option(asked)} contradicts {option('precision')} {model_args.precision}; give only one of them"
        )
    return asked or model_args.precision


def with_device(training: TrainingArguments, choice: DeviceChoice) -> TrainingArguments:
    """The training arguments with the chosen device and autocast precision."""
    return replace(
        training, bf16=choice.precision == "bf16", fp16=choice.precision == "fp16", use_cpu=choice.device == "cpu"
    )


def check_output_dir(training: TrainingArguments, output: OutputArguments, resume: Path | None) -> None:
    """A resumed run writes into its own folder; otherwise the folder is new, empty, or (with
    --overwrite_output_dir) an earlier run's own output, which is cleared when the run starts."""
    if resume:
        return
    check_output_folder(
        Path(training.output_dir),
        "output_dir",
        TRAINING_OUTPUT,
        output.overwrite_output_dir,
        f"pass {option('overwrite_output_dir')} to replace an earlier run's output, resume with "
        f"{option('resume_from_checkpoint')} latest",
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
    if splits.record_format_from:
        log.info("records: %s (%s)", splits.record_format, splits.record_format_from)
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
            "data: %d questions (or conversations) appear in more than one split (train/validation/test leak)",
            splits.leaked_questions,
        )
    problems = []
    if training and not splits.examples["train"]:
        problems.append(
            f"the training split is empty; give {option('train_file')} with more data or change "
            f"{option('split_ratios')}"
        )
    if training and training.eval_strategy != "no" and not splits.examples["validation"]:
        problems.append(
            f"the validation split is empty but {option('eval_strategy')} is {training.eval_strategy.value}; give "
            f"{option('validation_file')} or more training data, or pass {option('eval_strategy')} no"
        )
    if predicting and not splits.examples["test"]:
        problems.append(
            f"{option('do_predict')}: the test split is empty; give {option('test_file')}, or a "
            f"{option('train_file')} to split"
        )
    raise_problems(problems)
