"""A benchmark run: lm-evaluation-harness (`lm_eval.simple_evaluate`, model "hf") on a base model, an adapter (peft=)
or a merged folder, for the tasks named, on the device and in the dtype `--do_predict` would use; every question's
result kept (log_samples) as a prediction file, and per task the accuracy with a bootstrap interval.

Written to output_dir: benchmark_predictions.jsonl (a row per question: id, task, gold, chosen, correct, logliks),
benchmark.json (scores, intervals, lm-eval's own acc and stderr beside them, versions), benchmark.md (the table),
run_config.yaml (every setting) and tasks/ (the local task's questions and definition, when it ran).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bioqa.benchmark.results import question_rows, scores_table, task_scores
from bioqa.benchmark.tasks import (
    LOCAL,
    check_local_data,
    harness_tasks,
    local_rows,
    point_local_task,
    task_problems,
    write_local_task,
)
from bioqa.data.prompts import prompt_format
from bioqa.data.splits import load_splits
from bioqa.devices import choose_device
from bioqa.errors import InputError, option, raise_problems
from bioqa.io.files import staged_folder, write_json_atomic, write_jsonl_atomic, write_text_atomic, write_yaml_atomic
from bioqa.io.inventory import file_records, write_inventory
from bioqa.io.outputs import (
    BENCHMARK_OUTPUT,
    check_not_an_input,
    check_output_folder,
    check_own_output,
    output_lock,
)
from bioqa.settings import DataArguments, ModelArguments, PromptArguments
from bioqa.train.modeling import hub_reachable, load_tokenizer, resolve_model_name

log = logging.getLogger("bioqa")


@dataclass(frozen=True)
class BenchmarkArguments:
    tasks: list[str] = field(
        metadata={
            "help": "lm-evaluation-harness tasks or groups (pubmedqa, medmcqa, multimedqa; comma or space "
            "separated), or local: the labelled test split of test_file or train_file (label_field, as for training)."
        }
    )
    recipe: str | None = field(
        default=None,
        metadata={
            "help": "A training recipe (configs/*.yaml) or a run's run_config.yaml: its model, data and prompt "
            "settings are taken (the local task asks the questions as that run was trained); flags override it."
        },
    )
    output_dir: str = field(default="outputs/benchmark", metadata={"help": "Folder for the results."})
    limit: int | None = field(default=None, metadata={"help": "Score only the first N questions of each task."})
    batch_size: int = field(default=8, metadata={"help": "Questions per forward pass."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples per interval (0: none)."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap and of lm-eval's sampling."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier benchmark's results in output_dir."})


@dataclass(frozen=True)
class BenchmarkRun:
    """What a benchmark wrote: its folder, the scores per task, and the table."""

    output_dir: Path
    scores: dict[str, dict[str, Any]]
    table: str


def task_names(tasks: list[str]) -> list[str]:
    return [name.strip() for task in tasks for name in task.split(",") if name.strip()]


def argument_problems(args: BenchmarkArguments, tasks: list[str], model: ModelArguments) -> list[str]:
    problems = [] if tasks else [f"{option('tasks')} is empty; name lm-eval tasks or {LOCAL}"]
    for name in ("load_in_4bit", "attn_implementation"):  # model loading lm-eval does its own way: never ignored
        if getattr(model, name):
            problems.append(f"{option(name)} is a training setting the benchmark does not take; drop it")
    if args.limit is not None and args.limit < 1:
        problems.append(f"{option('limit')} must be positive, got {args.limit}")
    if args.batch_size < 1:
        problems.append(f"{option('batch_size')} must be positive, got {args.batch_size}")
    if args.bootstrap_samples < 0:
        problems.append(f"{option('bootstrap_samples')} must be 0 or more, got {args.bootstrap_samples}")
    return problems


def known_tasks() -> set[str]:
    from lm_eval.tasks import TaskManager

    return set(TaskManager().all_tasks)


def benchmark(
    args: BenchmarkArguments, model: ModelArguments, data: DataArguments, prompt: PromptArguments
) -> BenchmarkRun:
    """Run the benchmark the settings describe and write its results; InputError for anything found wrong first."""
    tasks = task_names(args.tasks)
    raise_problems(argument_problems(args, tasks, model))
    raise_problems(harness_problems(tasks, "tasks"))
    model = dataclasses.replace(model, model_name_or_path=resolve_model_name(model.model_name_or_path))
    choice = choose_device(model.device, model.precision, False, model.generation_dtype)
    out = Path(args.output_dir)
    inputs = {"model": model.model_name_or_path, "adapter": model.adapter_name_or_path, "recipe": args.recipe}
    check_not_an_input(out, "output_dir", inputs | {"data file": data.test_file, "training data": data.train_file})
    with output_lock(out, "output_dir"):
        check_output_folder(out, "output_dir", BENCHMARK_OUTPUT, args.overwrite, f"pass {option('overwrite')}")
        with staged_folder(out, lambda: check_own_output(out, "output_dir", BENCHMARK_OUTPUT)) as staging:
            run = run_benchmark(staging, out, (args, model, data, prompt), choice, tasks)
    return BenchmarkRun(out, run.scores, run.table)


def harness_problems(tasks: list[str], setting: str) -> list[str]:
    """Task names lm-eval does not know, and Hub tasks while offline (none to check for the local task alone)."""
    if all(task == LOCAL for task in tasks):
        return []
    return task_problems(tasks, known_tasks(), hub_reachable(), setting)


def run_benchmark(folder: Path, final: Path, settings: tuple, choice: Any, tasks: list[str]) -> BenchmarkRun:
    """Evaluate and write the result files into `folder`, which becomes `final` (a staging folder, or the folder
    itself); `settings`: the benchmark, model, data and prompt sections."""
    args, model, data, prompt = settings
    include = local_task(folder / "tasks", model, data, prompt) if LOCAL in tasks else None
    results = evaluate(args, model, choice, harness_tasks(tasks), include)
    if include is not None:  # the definition kept with the results names the file kept beside it
        point_local_task(include, final / "tasks")
    return write_results(folder, settings, choice, results)


def local_task(folder: Path, model: ModelArguments, data: DataArguments, prompt: PromptArguments) -> Path:
    # only the labels are scored: a file without answers is read as --target label reads it (the same continuations)
    splits = load_splits(dataclasses.replace(data, target="label") if data.target == "answer" else data)
    check_local_data(splits.examples["test"], splits.labels)
    # the tokenizer lm-eval loads too: an adapter's own (its run saved the one it trained with), else the model's
    tokenizer = load_tokenizer(
        dataclasses.replace(model, tokenizer_name=model.tokenizer_name or model.adapter_name_or_path)
    )
    rows = local_rows(tokenizer, prompt_format(tokenizer, prompt), splits.examples["test"], splits.labels, data.target)
    log.info("benchmark: local task of %d questions (labels %s)", len(rows), ", ".join(splits.labels))
    return write_local_task(folder, rows)


def evaluate(args: BenchmarkArguments, model: ModelArguments, choice: Any, tasks: list[str], include: Path | None):
    import lm_eval
    from lm_eval.tasks import TaskManager

    model_args: dict[str, Any] = {
        "pretrained": model.model_name_or_path,
        "dtype": choice.generation_dtype,
        "trust_remote_code": model.trust_remote_code,
    }
    if model.adapter_name_or_path:  # a training run's folder holds the tokenizer it trained with
        model_args |= {"peft": model.adapter_name_or_path, "tokenizer": model.adapter_name_or_path}
    if model.tokenizer_name:
        model_args["tokenizer"] = model.tokenizer_name
    log.info("benchmark: %s on %s (%s)", ", ".join(tasks), choice.device, choice.generation_dtype)
    return lm_eval.simple_evaluate(
        model="hf",
        model_args=model_args,
        tasks=tasks,
        task_manager=TaskManager(include_path=str(include) if include else None),
        device=choice.device,
        batch_size=args.batch_size,
        limit=args.limit,
        log_samples=True,
        random_seed=args.seed,
        numpy_random_seed=args.seed,
        torch_random_seed=args.seed,
    )


def write_results(staging: Path, settings: tuple, choice: Any, results: dict) -> BenchmarkRun:
    """The result files; `settings`: the run's sections (benchmark, model, data, prompt), written as run_config.yaml."""
    args, model = settings[0], settings[1]
    rows = question_rows(results["samples"])
    if not rows:
        raise InputError(f"{option('tasks')}: lm-eval scored no multiple-choice question; name multiple-choice tasks")
    scores = task_scores(rows, args.bootstrap_samples, args.seed)
    name = model.adapter_name_or_path or model.model_name_or_path
    table = scores_table(scores, Path(name).name or name)
    write_jsonl_atomic(staging / "benchmark_predictions.jsonl", rows)
    harness = {task: dict(values) for task, values in results["results"].items()}
    write_json_atomic(
        staging / "benchmark.json",
        {
            "model": model.model_name_or_path,
            "adapter": model.adapter_name_or_path,
            "device": choice.device,
            "dtype": choice.generation_dtype,
            "scores": scores,
            "lm_eval": harness,
            "versions": results.get("versions", {}),
        },
    )
    write_text_atomic(staging / "benchmark.md", f"# Benchmark: {name}\n\n{table}\n")
    write_yaml_atomic(
        staging / "run_config.yaml", {k: v for part in settings for k, v in dataclasses.asdict(part).items()}
    )
    write_inventory(staging, BENCHMARK_OUTPUT, file_records(staging))
    return BenchmarkRun(staging, scores, table)
