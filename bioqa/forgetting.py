"""The forgetting check after training (`--benchmark_tasks`): did fine-tuning cost general knowledge?

Once the adapter is saved (and the test split answered), lm-evaluation-harness runs the tasks named on the base and
on the adapter, exactly as `bioqa-benchmark` with its defaults would, and the two result files are compared question
by question (bioqa.benchmark.comparison). Written into the run's folder and recorded in its inventory:

    benchmark/base/        bioqa-benchmark's files for the base model
    benchmark/adapter/     the same for the adapter just trained
    benchmark/comparison/  report.md and comparison.json: both accuracies per task, the paired interval, McNemar

The run's manifest and model card gain the comparison's table.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
from pathlib import Path
from typing import Any

from bioqa.benchmark.comparison import benchmark_comparison, report, write_files
from bioqa.benchmark.run import BenchmarkArguments, harness_problems, run_benchmark, task_names
from bioqa.benchmark.tasks import LOCAL
from bioqa.checks import wants_training
from bioqa.devices import DeviceChoice
from bioqa.errors import RunError, option
from bioqa.evaluate.predictions import read_rows
from bioqa.io.files import read_json, staged_folder, write_json_atomic
from bioqa.io.inventory import record
from bioqa.io.outputs import TRAINING_OUTPUT
from bioqa.recipe import Recipe
from bioqa.run_files import write_model_card

log = logging.getLogger("bioqa")

FOLDER = "benchmark"
SIDES = ("base", "adapter")


def forgetting_problems(recipe: Recipe) -> list[str]:
    """What would stop the check after training, found before any weights load."""
    if recipe.evaluation.benchmark_tasks is None:
        return []
    tasks, setting = task_names(recipe.evaluation.benchmark_tasks), option("benchmark_tasks")
    problems = [] if tasks else [f"{setting} is empty; name lm-eval tasks (pubmedqa, multimedqa, ...) or {LOCAL}"]
    if not wants_training(recipe.training):
        problems.append(
            f"{setting} runs after training; add {option('do_train')}, or benchmark a model with bioqa-benchmark"
        )
    if LOCAL in tasks and not recipe.data.label_field:
        problems.append(f"{setting} {LOCAL} scores the test split's labels: give {option('label_field')}")
    if recipe.model.load_in_4bit:
        problems.append(
            f"{setting} with {option('load_in_4bit')}: lm-eval would load the base unquantized, not the 4-bit base "
            "the adapter trained on; merge the adapter and benchmark the merged model with bioqa-benchmark"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        problems.append(
            f"{setting} runs in one process; after a run on several processes, benchmark its adapter with "
            "bioqa-benchmark"
        )
    return problems + harness_problems(tasks, "benchmark_tasks")


def check_forgetting(recipe: Recipe, choice: DeviceChoice) -> None:
    """Benchmark the base and the adapter just saved, compare them, and add the comparison to the run's files."""
    out = Path(recipe.training.output_dir)
    tasks = task_names(recipe.evaluation.benchmark_tasks)
    args = BenchmarkArguments(
        tasks=tasks, bootstrap_samples=recipe.evaluation.bootstrap_samples, output_dir=str(out / FOLDER)
    )
    gc.collect()  # the trained model's last references are gone: lm-eval loads two models of its own
    with staged_folder(out / FOLDER, lambda: _refuse_existing(out / FOLDER)) as staging:
        for side in SIDES:
            model = dataclasses.replace(recipe.model, adapter_name_or_path=str(out) if side == "adapter" else None)
            log.info("forgetting check: %s on %s", ", ".join(tasks), side)
            (staging / side).mkdir()
            settings = (
                dataclasses.replace(args, output_dir=str(out / FOLDER / side)),
                model,
                recipe.data,
                recipe.prompt,
            )
            run_benchmark(staging / side, out / FOLDER / side, settings, choice, tasks)
        files = tuple(str(out / FOLDER / side / "benchmark_predictions.jsonl") for side in SIDES)
        rows = tuple(read_rows(staging / side / "benchmark_predictions.jsonl") for side in SIDES)
        result = benchmark_comparison(rows, files, args.bootstrap_samples, args.seed)
        table, text = report(result, SIDES)
        (staging / "comparison").mkdir()
        details = {"baseline": files[0], "candidate": files[1], "names": list(SIDES)}
        write_files(staging / "comparison", result, text, details)
    record(out, TRAINING_OUTPUT, FOLDER)
    log.info("forgetting check (%s/comparison/report.md):\n%s", FOLDER, table)
    _add_to_run_files(recipe, out, {"tasks": tasks, "folder": FOLDER, "table": table})


def _refuse_existing(folder: Path) -> None:
    raise RunError(f"{folder} appeared while the benchmark ran; move it away and run the check with bioqa-benchmark")


def _add_to_run_files(recipe: Recipe, out: Path, found: dict[str, Any]) -> None:
    """The manifest and the model card gain the comparison (the card keeps the test scores it had)."""
    manifest = {**read_json(out / "run_manifest.json", "the run manifest"), "benchmark": found}
    write_json_atomic(out / "run_manifest.json", manifest)
    record(out, TRAINING_OUTPUT, "run_manifest.json")
    summary = out / "predict_metrics.json"
    test = read_json(summary, "the prediction metrics") if summary.is_file() else None
    write_model_card(out, recipe, manifest, test=test)
