"""Did fine-tuning help? Compare two prediction files over the same examples.

    python -m bioqa.comparison --baseline outputs/zero-shot/predictions.jsonl \\
        --candidate outputs/fine-tuned/predictions.jsonl --output_dir outputs/report

Writes into --output_dir: report.md (each metric for both systems, the difference, its paired
bootstrap 95% interval and p-value; the examples ROUGE-L moved most either way; answer lengths),
comparison.json (the same numbers), scores.png (per-example score distributions of both systems)
and, given a trainer_state.json (found next to the candidate's predictions, or --trainer_state),
training_curves.png. Files with labels (--label_field) also compare accuracy and macro-F1, with an
exact McNemar test of accuracy, both confusion matrices (in report.md and confusion.png) and the
questions that flipped right -> wrong and wrong -> right. Both files are re-scored with
metrics_utils, so their numbers are comparable whatever wrote them.

Two benchmark_predictions.jsonl of bioqa-benchmark instead are compared question by question (the forgetting
check): per task and over all tasks both accuracies, the paired bootstrap interval of the difference, McNemar's
exact test and the questions that flipped, in report.md and comparison.json.

Several runs per side (every seed's predictions.jsonl, or the folder of a `load_models.py --seeds` study) are
compared over seeds: each side's mean and standard deviation over its runs, every run's scores, and the difference
of the means with a two-level bootstrap interval (runs, then questions) and p-value, in report.md and comparison.json.

    python -m bioqa.comparison --baseline outputs/recipe-a --candidate outputs/recipe-b --output_dir outputs/a-vs-b
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from bioqa.api import compare
from bioqa.cli.runner import run_main
from bioqa.config import build_parser, parse_arguments


@dataclass
class CompareArguments:
    baseline: list[str] = field(
        metadata={
            "help": "predictions.jsonl (or benchmark_predictions.jsonl) of the reference system (e.g. zero-shot); "
            "several files, or a seeds study's folder, for a comparison over seeds."
        }
    )
    candidate: list[str] = field(
        metadata={
            "help": "predictions.jsonl (or benchmark_predictions.jsonl) of the system to compare (e.g. fine-tuned); "
            "several files, or a seeds study's folder, for a comparison over seeds."
        }
    )
    output_dir: str = field(
        default="outputs/report", metadata={"help": "Folder for report.md, comparison.json and the plots."}
    )
    baseline_name: str | None = field(
        default=None,
        metadata={"help": "Name of the baseline in the report; default: zero-shot (baseline over seeds)."},
    )
    candidate_name: str | None = field(
        default=None,
        metadata={"help": "Name of the candidate in the report; default: fine-tuned (candidate over seeds)."},
    )
    trainer_state: str | None = field(
        default=None, metadata={"help": "trainer_state.json for the training curves; default: next to --candidate."}
    )
    labels: list[str] | None = field(
        default=None,
        metadata={
            "help": "The label set for accuracy and macro-F1; default: the one in the run_manifest.json next to "
            "--candidate (or --baseline), else the labels the files hold."
        },
    )
    bootstrap_samples: int = field(default=1000, metadata={"help": "Paired bootstrap resamples."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    examples_shown: int = field(
        default=5, metadata={"help": "How many best and worst examples (by ROUGE-L difference) report.md lists."}
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Replace an earlier comparison in --output_dir (only the files it recorded in written_files.json; "
            "a folder holding any other file, or one changed since, is refused)."
        },
    )


def run(argv: list[str] | None) -> int:
    args = parse_arguments(build_parser([CompareArguments], description=__doc__.split("\n\n")[0]), argv)[0]
    result = compare(
        _side(args.baseline),
        _side(args.candidate),
        args.output_dir,
        names=(args.baseline_name, args.candidate_name),
        labels=args.labels,
        bootstrap_samples=args.bootstrap_samples,
        seed=args.seed,
        examples_shown=args.examples_shown,
        trainer_state=args.trainer_state,
        overwrite=args.overwrite,
    )
    print(f"{result.table}\n\nreport: {Path(args.output_dir) / 'report.md'}")
    return 0


def _side(files: list[str]) -> str | list[str]:
    return files[0] if len(files) == 1 else files


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
