"""The Python API: what a notebook calls, with the same outputs on disk and the same errors as the commands.

    import bioqa
    result = bioqa.compare("zero-shot/predictions.jsonl", "fine-tuned/predictions.jsonl", "report")
    print(result)                      # the scores table
    result.metrics["rougeL"]["p_value"]
    bioqa.merge("outputs/run1")        # -> outputs/run1-merged, verified

Errors are `bioqa.InputError` (the input can be fixed: the message says how) and `bioqa.RunError`; settings are
named as the keyword arguments are (`bootstrap_samples`), not as flags.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bioqa.benchmark.comparison import is_benchmark_rows
from bioqa.errors import InputError, option, raise_problems
from bioqa.evaluate.comparison import aligned, compare_rows, label_set_of
from bioqa.evaluate.metrics import Reference, compute_metrics
from bioqa.evaluate.predictions import PredictionRow, checked_prediction_rows, read_rows
from bioqa.io.files import (
    path_kind,
    read_json,
    read_run_config,
    staged_folder,
    write_json_atomic,
    write_text_atomic,
    wrong_kind,
)
from bioqa.io.inventory import file_records, write_inventory
from bioqa.io.outputs import (
    COMPARISON_OUTPUT,
    check_not_an_input,
    check_output_folder,
    check_own_output,
    output_lock,
    real,
    run_folder,
)
from bioqa.merge_run import MergeReport, MergeSettings
from bioqa.merge_run import run as run_merge
from bioqa.results import STUDY_FILE, Seeds


def score(
    predictions: Sequence[str],
    references: Sequence[Reference],
    *,
    bootstrap_samples: int = 1000,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Corpus ROUGE, BLEU and METEOR of `predictions` against `references`, each with its bootstrap 95% interval
    (`bootstrap_samples=0`: none); `options` as `metrics_utils.compute_metrics` takes them.

        >>> bioqa.score(["Metformin lowers glucose."], ["Metformin lowers blood glucose."])["rougeL"]
    """
    return compute_metrics(predictions, references, bootstrap_samples=bootstrap_samples, seed=seed, **options)


@dataclass(frozen=True)
class Comparison:
    """Two systems' answers to the same questions, compared pairwise.

    `details` is what comparison.json holds; `metrics` maps each metric to both scores, the difference (candidate
    minus baseline), its paired bootstrap 95% interval (`ci_low`, `ci_high`) and `p_value` (None below
    `bioqa.evaluate.bootstrap.MIN_EXAMPLES` examples); `labels` holds McNemar's test, the confusion matrices and the
    flipped ids when the files have labels; `output_dir` the folder with report.md, comparison.json and the plots
    (None when none was asked for).
    """

    names: tuple[str, str]
    details: dict[str, Any] = field(repr=False)
    table: str = field(repr=False)
    output_dir: Path | None = None

    @property
    def num_examples(self) -> int:
        return self.details["num_examples"]

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.details["metrics"]

    @property
    def labels(self) -> dict[str, Any]:
        return self.details["labels"]

    def __str__(self) -> str:
        return self.table


Source = str | os.PathLike | list[PredictionRow]  # one run's predictions: a file, or its rows


def _rows(source: str | os.PathLike | list[PredictionRow], raw: list[dict] | None, name: str) -> list[PredictionRow]:
    """The prediction rows of a file (its rows as read, `raw`), what `bioqa.predict` returned, or the rows given."""
    if raw is not None:
        return checked_prediction_rows(raw, os.fspath(source))
    if not source:
        raise InputError(f"{name} has no rows; give a predictions.jsonl or its rows")
    return list(source)


def _trainer_state(trainer_state: str | Path | None, candidate: str | None) -> Path | None:
    """The candidate run's trainer_state.json for the training curves: the one given, else the one beside it."""
    if trainer_state is not None:
        if path_kind(str(trainer_state)) != "a file":
            raise InputError(
                f"{option('trainer_state')} {wrong_kind(str(trainer_state), 'a file')}; give a trainer_state.json"
            )
        return Path(trainer_state)
    beside = Path(candidate).parent / "trainer_state.json" if candidate else None
    return beside if beside is not None and beside.is_file() else None


def _label_set(labels: Sequence[str] | None, files: list[str | None], rows: list[PredictionRow]):
    """The labels given, else those of the runs the files come from, else those the rows hold."""
    if "label" not in rows[0]:
        return None
    if labels:
        return tuple(labels)
    for file in files:
        folder = run_folder(file) if file else None
        manifest = folder / "run_manifest.json" if folder else None
        if manifest and manifest.is_file():
            content = read_json(manifest, "the run manifest")
            declared = content.get("labels") if isinstance(content, dict) else None
            if isinstance(declared, list) and declared:
                return tuple(declared)
    return label_set_of(rows)


def _problems(bootstrap_samples: int, examples_shown: int) -> list[str]:
    problems = []
    if bootstrap_samples <= 0:
        problems.append(f"{option('bootstrap_samples')} must be positive, got {bootstrap_samples}")
    if examples_shown < 0:
        problems.append(f"{option('examples_shown')} must be 0 or more, got {examples_shown}")
    return problems


def compare(
    baseline: Source | Sequence[Source],
    candidate: Source | Sequence[Source],
    output_dir: str | Path | None = None,
    *,
    names: tuple[str | None, str | None] = (None, None),
    labels: Sequence[str] | None = None,
    bootstrap_samples: int = 1000,
    seed: int = 0,
    examples_shown: int = 5,
    trainer_state: str | Path | None = None,
    overwrite: bool = False,
) -> Comparison:
    """Compare two prediction files (or their rows, or what `bioqa.predict` returned) over the same examples, as
    `bioqa-compare` does; with `output_dir`, write report.md, comparison.json and the plots there (an earlier
    comparison is replaced only with `overwrite`, and only the files it recorded). Two bioqa-benchmark result files
    are compared question by question instead (accuracy per task, paired interval, McNemar, the flips). Several runs
    per side (lists of prediction files, or seeds studies) are compared over seeds: each side's mean and standard
    deviation, and a two-level bootstrap (runs, then questions) of the difference. `names` default to zero-shot and
    fine-tuned (baseline and candidate over seeds).

        >>> result = bioqa.compare("zero-shot/predictions.jsonl", "fine-tuned/predictions.jsonl", "report")
        >>> result.metrics["rougeL"]["difference"], result.metrics["rougeL"]["p_value"]
    """
    raise_problems(_problems(bootstrap_samples, examples_shown))
    sides = (_runs_of(baseline), _runs_of(candidate))
    if len(sides[0]) > 1 or len(sides[1]) > 1:  # several runs per side: seeds of two recipes
        names = (names[0] or "baseline", names[1] or "candidate")
        return _seeds_comparison(sides, output_dir, names, labels, bootstrap_samples, seed, overwrite)
    names = (names[0] or "zero-shot", names[1] or "fine-tuned")
    baseline, candidate = sides[0][0], sides[1][0]
    files = [os.fspath(s) if isinstance(s, (str, os.PathLike)) else None for s in (baseline, candidate)]
    state = _trainer_state(trainer_state, files[1])
    out = Path(output_dir) if output_dir is not None else None
    if out is not None:
        inputs = {"baseline predictions": files[0], "candidate predictions": files[1], "trainer state": state}
        inputs |= {f"{side}'s run": run_folder(f) for side, f in zip(("baseline", "candidate"), files) if f}
        check_not_an_input(out, "output_dir", inputs)
    raw = [read_rows(f) if f else None for f in files]
    if all(rows is not None and is_benchmark_rows(rows) for rows in raw):  # two bioqa-benchmark result files
        return _benchmark_comparison(
            (raw[0], raw[1]), (files[0], files[1]), out, names, bootstrap_samples, seed, overwrite
        )
    base_rows = _rows(baseline, raw[0], names[0])
    cand_rows = aligned(base_rows, _rows(candidate, raw[1], names[1]), names)
    label_set = _label_set(labels, [files[1], files[0]], base_rows + cand_rows)
    if out is None:
        from bioqa.evaluate.report import scores_table

        result = compare_rows(base_rows, cand_rows, bootstrap_samples, seed, label_set)
        return Comparison(names, _details(result), scores_table(result, names))
    with _comparison_folder(out, overwrite) as staging:
        from bioqa.evaluate.report import write_report  # matplotlib: only when there is a report to write

        result = compare_rows(base_rows, cand_rows, bootstrap_samples, seed, label_set)
        table = write_report(staging, result, base_rows, cand_rows, names, state, examples_shown)
        details = _details(result) | {"baseline": files[0], "candidate": files[1], "names": list(names)}
        write_json_atomic(staging / "comparison.json", details)
    return Comparison(names, details, table, out)


def _runs_of(side: Source | Sequence[Source]) -> list[Source]:
    """One side's runs: a prediction file, its rows or what `bioqa.predict` returned (one run); a list of files or
    of row lists (several runs); a seeds study (what `bioqa.finetune_seeds` returned, or its folder), whose seeds'
    prediction files."""
    if isinstance(side, (str, os.PathLike)):
        if (Path(side) / STUDY_FILE).is_file():
            return list(Seeds(Path(side)).prediction_files())
        return [side]
    if side and all(isinstance(item, (str, os.PathLike, list)) for item in side):
        return [run for item in side for run in (_runs_of(item) if not isinstance(item, list) else [item])]
    return [side]


def _seeds_comparison(
    sides: tuple[list[Source], list[Source]],
    output_dir: str | Path | None,
    names: tuple[str, str],
    labels: Sequence[str] | None,
    samples: int,
    seed: int,
    overwrite: bool,
) -> Comparison:
    """Several runs per side: the two-level bootstrap comparison (bioqa.evaluate.seed_comparison)."""
    from bioqa.evaluate.seed_comparison import SIDES, check_runs, compare_runs, means_table, report_text

    runs = {
        side: [_run_identity(source, f"{name} run {i}") for i, source in enumerate(found, 1)]
        for side, name, found in zip(SIDES, names, sides)
    }
    check_runs(runs)
    out = Path(output_dir) if output_dir is not None else None
    if out is not None:
        files = {f"{side} run {run['file']}": run["path"] for side in SIDES for run in runs[side]}
        folders = {
            f"{side}'s run {run['file']}": run_folder(run["path"])
            for side in SIDES
            for run in runs[side]
            if run["path"]
        }
        check_not_an_input(out, "output_dir", files | folders)
    rows = [[_run_rows(source, run) for source, run in zip(found, runs[side])] for side, found in zip(SIDES, sides)]
    first, first_name = rows[0][0], runs["baseline"][0]["file"]
    paired = [
        [aligned(first, other, (first_name, run["file"])) for other, run in zip(side_rows, runs[side])]
        for side, side_rows in zip(SIDES, rows)
    ]
    label_set = _label_set(labels, [run["path"] for side in SIDES for run in runs[side]], first)
    result = compare_runs(paired[0], paired[1], samples, seed, label_set)
    listed = {side: [{"file": run["file"], "seed": run["seed"]} for run in runs[side]] for side in SIDES}
    details = result | {"runs_compared": listed, "names": list(names)}
    if out is not None:
        with _comparison_folder(out, overwrite) as staging:
            write_text_atomic(staging / "report.md", report_text(result, names, runs))
            write_json_atomic(staging / "comparison.json", details)
    return Comparison(names, details, means_table(result, names), out)


def _run_rows(source: Source, run: dict[str, Any]) -> list[PredictionRow]:
    raw = read_rows(run["path"]) if run["path"] else None
    if raw is not None and is_benchmark_rows(raw):
        raise InputError(
            f"{run['file']} is a bioqa-benchmark result: a comparison over seeds takes predictions.jsonl files; "
            "compare benchmark results two files at a time"
        )
    return _rows(source, raw, run["file"])


def _run_identity(source: Source, label: str) -> dict[str, Any]:
    """A run's file (or a label for rows given directly), its resolved path and the seed its run_config.yaml names."""
    if not isinstance(source, (str, os.PathLike)):
        return {"file": label, "path": None, "real": label, "seed": None}
    path = os.fspath(source)
    folder = run_folder(path)
    config = read_run_config(folder / "run_config.yaml") if folder and (folder / "run_config.yaml").is_file() else {}
    return {"file": path, "path": path, "real": str(real(path)), "seed": config.get("seed")}


@contextmanager
def _comparison_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """A staging folder for a comparison's files, under the output's lock: it replaces `out` (only an earlier
    comparison's own files, with `overwrite`) with every file written recorded in its inventory."""
    with output_lock(out, "output_dir"):
        check_output_folder(
            out, "output_dir", COMPARISON_OUTPUT, overwrite, f"pass {option('overwrite')} to replace it"
        )
        with staged_folder(out, lambda: check_own_output(out, "output_dir", COMPARISON_OUTPUT)) as staging:
            yield staging
            write_inventory(staging, COMPARISON_OUTPUT, file_records(staging))


def _benchmark_comparison(
    raw: tuple[list, list],
    files: tuple[str, str],
    out: Path | None,
    names: tuple[str, str],
    samples: int,
    seed: int,
    overwrite: bool,
) -> Comparison:
    """The forgetting check of two bioqa-benchmark result files (bioqa.benchmark.comparison)."""
    from bioqa.benchmark.comparison import benchmark_comparison, report, write_files
    from bioqa.benchmark.results import ALL

    result = benchmark_comparison(raw, files, samples, seed)
    table, text = report(result, names)
    overall = result.get(ALL) or next(iter(result.values()))
    details = {
        "num_examples": overall["questions"],
        "metrics": {"accuracy": overall},
        "labels": {},
        "baseline": files[0],
        "candidate": files[1],
        "names": list(names),
    }
    if out is not None:
        with _comparison_folder(out, overwrite) as staging:
            write_files(staging, result, text, details)
    return Comparison(names, {**details, "benchmark": result}, table, out)


def merge(
    adapter_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    base_model: str | None = None,
    dtype: str = "auto",
    max_shard_size: str = "2GB",
    device: str = "cpu",
    low_memory: bool = False,
    verify: bool = True,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    push_to_hub: bool = False,
    hub_model_id: str | None = None,
    **unknown: Any,
) -> MergeReport:
    """Merge the adapter in `adapter_dir` (a folder, or the `Run` that `bioqa.finetune` returned) into its base,
    verify the merged model against base + adapter and write it to `output_dir` (default: `<adapter_dir>-merged`),
    as `bioqa-merge` does; the other settings are its flags (`bioqa.merge_run.MergeSettings` says what each does).

        >>> report = bioqa.merge("outputs/run1", dtype="bf16")
        >>> report.output_dir, report.verification["passed"]
    """
    settings = {name: value for name, value in locals().items() if name not in ("adapter_dir", "output_dir", "unknown")}
    if unknown:  # a mistyped name gets the list, as a mistyped flag does
        raise InputError(
            f"bioqa.merge has no setting {', '.join(sorted(unknown))}; the settings are {', '.join(sorted(settings))}"
        )
    target = os.fspath(output_dir) if output_dir is not None else None
    return run_merge(MergeSettings(os.fspath(adapter_dir), output_dir=target, **settings))


def _details(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "scores"}  # per-example score objects: not JSON
