"""One recipe trained once per seed (`load_models.py --seeds 1 2 3`, `bioqa.finetune_seeds`): a conclusion about a
recipe should not rest on one lucky seed.

    outputs/study/run_config.yaml   the study's recipe (seeds included)
    outputs/study/seed-1/ ...       each seed's run, exactly as `--seed 1 --output_dir outputs/study/seed-1` writes it
    outputs/study/seeds.json        every seed's scores, their mean and standard deviation (seeds.md: as a table)

Every seed's recipe is checked before any trains. The folder follows the output rules of a run (bioqa.io.outputs):
new or empty, or with `overwrite_output_dir` an earlier study's own files. `resume_from_checkpoint latest` goes on
with an interrupted study: finished seeds are kept, a seed with a checkpoint resumes from its newest one, the others
start again. `bioqa-compare` takes the folder as one side of a comparison over seeds.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bioqa.checks import argument_problems
from bioqa.errors import option, raise_problems
from bioqa.evaluate.report import top_of
from bioqa.finetuning import prepare, run_inputs, run_locked
from bioqa.io.files import write_json_atomic, write_text_atomic, write_yaml_atomic
from bioqa.io.inventory import record, remove_recorded
from bioqa.io.outputs import SEEDS_OUTPUT, check_not_an_input, check_output_folder, output_lock
from bioqa.recipe import Recipe
from bioqa.results import STUDY_FILE, Predictions, Run, Seeds
from bioqa.run_files import is_main_launch_process, wait_for_every_process
from bioqa.train.resume import completed_run

log = logging.getLogger("bioqa")


def finetune_seeds(recipe: Recipe, seeds: Sequence[int] | None = None, *, command: Sequence[str] = ()) -> Seeds:
    """Train `recipe` once per seed (`seeds`, default the recipe's own), each run in `<output_dir>/seed-N`, and
    summarise every seed's scores with their mean and standard deviation, as `load_models.py --seeds` does.

        >>> study = bioqa.finetune_seeds(recipe.replace(do_predict=True), seeds=[1, 2, 3])
        >>> study.summary["mean"]["rougeL"], study.summary["sd"]["rougeL"]
    """
    recipe = recipe.replace(do_train=True, **({"seeds": list(seeds)} if seeds is not None else {}))
    return train_seeds(recipe, command or ("bioqa.finetune_seeds",))


def train_seeds(recipe: Recipe, command: Sequence[str]) -> Seeds:
    """Check the study and every seed's run, then train the seeds one after another (see the module's text)."""
    raise_problems(argument_problems(recipe))
    out, main = Path(recipe.training.output_dir), is_main_launch_process()
    resuming = recipe.training.resume_from_checkpoint not in (None, "", "false", "False")
    check_not_an_input(out, "output_dir", run_inputs(recipe))
    planned = [(seed, prepare(seed_recipe(recipe, seed, out, resuming))) for seed in recipe.training.seeds]
    with output_lock(out, "output_dir", enabled=main):
        if not resuming:
            check_output_folder(
                out,
                "output_dir",
                SEEDS_OUTPUT,
                recipe.output.overwrite_output_dir,
                f"pass {option('overwrite_output_dir')} to replace an earlier study, or resume it with "
                f"{option('resume_from_checkpoint')} latest",
            )
        begin_study(recipe, out, resuming, main)
        for seed, (seed_run, choice) in planned:
            folder = Path(seed_run.training.output_dir)
            if resuming and finished(folder, seed_run):
                log.info("seed %d: the run in %s is complete; kept", seed, folder)
            else:
                log.info("seed %d of %s: training into %s", seed, recipe.training.seeds, folder)
                with output_lock(folder, "output_dir", enabled=main):
                    run_locked(seed_run, command, choice)
            if main:
                record(out, SEEDS_OUTPUT, folder.name)
            release_memory()
        if main:
            write_summary(out, recipe)
        wait_for_every_process()
    return Seeds(out)


def release_memory() -> None:
    """What one seed's run held goes before the next loads its model (in one process the peak resident memory of a
    PubMedQA study rose from 8.6 GB in its first seed to 10.9 GB in its second; what this saves is not yet measured)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def seed_recipe(recipe: Recipe, seed: int, out: Path, resuming: bool) -> Recipe:
    """One seed's run: the study's recipe with that seed, in `out/seed-N`; when resuming, from its own newest
    checkpoint, or (none saved) started again over its own earlier files."""
    folder = out / f"seed-{seed}"
    changes: dict[str, Any] = {"seed": seed, "seeds": None, "output_dir": str(folder)}
    if resuming:
        has_checkpoint = any((c / "trainer_state.json").is_file() for c in folder.glob("checkpoint-*"))
        changes |= (
            {"resume_from_checkpoint": "latest"}
            if has_checkpoint
            else {"resume_from_checkpoint": None, "overwrite_output_dir": True}
        )
    return recipe.replace(**changes)


def finished(folder: Path, seed_run: Recipe) -> bool:
    """Whether a seed's run has every final file: its adapter, and with do_predict its predictions."""
    predicted = not seed_run.training.do_predict or (folder / "predictions.jsonl").is_file()
    return completed_run(folder) and predicted


def begin_study(recipe: Recipe, out: Path, resuming: bool, main: bool) -> None:
    """With overwrite, an earlier study's own files go (every seed's run with them); the study's recipe is written."""
    if main:
        if not resuming and recipe.output.overwrite_output_dir:
            removed = remove_recorded(out)
            if removed:
                log.info("%s: removed the %d files of the earlier study", option("overwrite_output_dir"), len(removed))
        out.mkdir(parents=True, exist_ok=True)
        write_yaml_atomic(out / "run_config.yaml", recipe.settings())
        record(out, SEEDS_OUTPUT, "run_config.yaml")
    wait_for_every_process()


def seed_scores(folder: Path) -> tuple[str, dict[str, float]]:
    """A seed's run's scores: ("test", ...) from its predictions, else ("validation", ...) from its final evaluation
    (its generated answers' scores, or the eval_ numbers of metrics.json when it generated none)."""
    predictions = Predictions(folder)
    if predictions.path.is_file():
        return "test", {name: entry["score"] for name, entry in predictions.scores.items()}
    run = Run(folder)
    if run.validation:
        return "validation", {name: entry["score"] for name, entry in run.validation["scores"].items()}
    numbers = {k.removeprefix("eval_"): v for k, v in run.metrics.items() if k.startswith("eval_")}
    return "validation", {k: v for k, v in numbers.items() if isinstance(v, (int, float)) and "per_second" not in k}


def write_summary(out: Path, recipe: Recipe) -> None:
    """seeds.json and seeds.md: every seed's scores, their mean and (two or more seeds) standard deviation."""
    seeds = recipe.training.seeds
    found = {seed: seed_scores(out / f"seed-{seed}") for seed in seeds}
    split = next(iter(found.values()))[0]
    names = [name for name in next(iter(found.values()))[1] if all(name in s for _, s in found.values())]
    values = {name: [found[seed][1][name] for seed in seeds] for name in names}
    mean = {name: statistics.fmean(v) for name, v in values.items()}
    sd = {name: statistics.stdev(v) if len(v) > 1 else None for name, v in values.items()}
    runtime = {seed: Run(out / f"seed-{seed}").metrics.get("train_runtime") for seed in seeds}
    table = summary_table(seeds, names, found, mean, sd)
    summary = {
        "seeds": seeds,
        "runs": [{"seed": seed, "folder": f"seed-{seed}"} for seed in seeds],
        "split": split,
        "scores": {str(seed): found[seed][1] for seed in seeds},
        "mean": mean,
        "sd": sd,
        "train_runtime": {str(seed): runtime[seed] for seed in seeds},
        "table": table,
    }
    write_json_atomic(out / STUDY_FILE, summary)
    write_text_atomic(
        out / "seeds.md",
        f"# {len(seeds)} seeds of one recipe: {split} scores\n\n{table}\n\nTo compare it with another recipe's "
        "study (a two-level bootstrap: seeds, then questions), give both folders to bioqa-compare (baseline and "
        "candidate) or to bioqa.compare.\n",
    )
    record(out, SEEDS_OUTPUT, STUDY_FILE, "seeds.md")
    log.info("%d seeds, %s scores:\n%s", len(seeds), split, table)


def summary_table(
    seeds: list[int],
    names: list[str],
    found: dict[int, tuple[str, dict[str, float]]],
    mean: dict[str, float],
    sd: dict[str, float | None],
) -> str:
    def cell(value: float | None, name: str) -> str:
        return "n/a" if value is None else f"{value:.2f}" if top_of(name) > 1 else f"{value:.4f}"

    lines = [f"| seed | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    lines += [f"| {seed} | {' | '.join(cell(found[seed][1][n], n) for n in names)} |" for seed in seeds]
    lines.append(f"| **mean** | {' | '.join(cell(mean[n], n) for n in names)} |")
    lines.append(f"| standard deviation | {' | '.join(cell(sd[n], n) for n in names)} |")
    return "\n".join(lines)
