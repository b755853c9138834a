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
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from bioqa.cli.config import build_parser, parse_arguments
from bioqa.cli.runner import run_main
from bioqa.comparison import aligned, compare, label_set_of
from bioqa.errors import InputError, raise_problems
from bioqa.files import path_kind, read_json, staged_folder, write_json_atomic, wrong_kind
from bioqa.inventory import file_records, write_inventory
from bioqa.outputs import (
    COMPARISON_OUTPUT,
    check_not_an_input,
    check_output_folder,
    check_own_output,
    output_lock,
    run_folder,
)
from bioqa.predictions import read_prediction_file


@dataclass
class CompareArguments:
    baseline: str = field(metadata={"help": "predictions.jsonl of the reference system (e.g. zero-shot)."})
    candidate: str = field(metadata={"help": "predictions.jsonl of the system to compare (e.g. fine-tuned)."})
    output_dir: str = field(
        default="outputs/report", metadata={"help": "Folder for report.md, comparison.json and the plots."}
    )
    baseline_name: str = field(default="zero-shot", metadata={"help": "Name of the baseline in the report."})
    candidate_name: str = field(default="fine-tuned", metadata={"help": "Name of the candidate in the report."})
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


def find_trainer_state(args: CompareArguments) -> Path | None:
    if args.trainer_state:
        if path_kind(args.trainer_state) != "a file":
            raise InputError(f"--trainer_state {wrong_kind(args.trainer_state, 'a file')}; give a trainer_state.json")
        return Path(args.trainer_state)
    candidate = Path(args.candidate).parent / "trainer_state.json"
    return candidate if candidate.is_file() else None


def label_set(args: CompareArguments, baseline: list, candidate: list) -> tuple[str, ...] | None:
    """--labels, else the label set of the runs the files come from, else the labels the files hold."""
    if "label" not in baseline[0]:
        return None
    if args.labels:
        return tuple(args.labels)
    for file in (args.candidate, args.baseline):
        folder = run_folder(file)
        manifest = folder / "run_manifest.json" if folder else None
        if manifest and manifest.is_file():
            content = read_json(manifest, "the run manifest")
            declared = content.get("labels") if isinstance(content, dict) else None
            if isinstance(declared, list) and declared:
                return tuple(declared)
    return label_set_of(baseline + candidate)


def argument_problems(args: CompareArguments) -> list[str]:
    problems = []
    if args.bootstrap_samples <= 0:
        problems.append(f"--bootstrap_samples must be positive, got {args.bootstrap_samples}")
    if args.examples_shown < 0:
        problems.append(f"--examples_shown must be 0 or more, got {args.examples_shown}")
    return problems


def run(argv: list[str] | None) -> int:
    from bioqa.report import write_report  # matplotlib: only once the arguments are known to be good

    args = parse_arguments(build_parser([CompareArguments], description=__doc__.split("\n\n")[0]), argv)[0]
    raise_problems(argument_problems(args))
    out, state = Path(args.output_dir), find_trainer_state(args)
    check_not_an_input(
        out,
        "output_dir",
        {
            "baseline predictions": args.baseline,
            "candidate predictions": args.candidate,
            "trainer state": state,
            "baseline's run": run_folder(args.baseline),
            "candidate's run": run_folder(args.candidate),
        },
    )
    names = (args.baseline_name, args.candidate_name)
    baseline = read_prediction_file(args.baseline)
    candidate = aligned(baseline, read_prediction_file(args.candidate), names)
    with output_lock(out, "output_dir"):
        check_output_folder(out, "output_dir", COMPARISON_OUTPUT, args.overwrite, "pass --overwrite to replace it")
        result = compare(baseline, candidate, args.bootstrap_samples, args.seed, label_set(args, baseline, candidate))
        with staged_folder(out, lambda: check_own_output(out, "output_dir", COMPARISON_OUTPUT)) as staging:
            table = write_report(staging, result, baseline, candidate, names, state, args.examples_shown)
            write_json_atomic(
                staging / "comparison.json",
                {k: v for k, v in result.items() if k != "scores"}
                | {"baseline": args.baseline, "candidate": args.candidate, "names": list(names)},
            )
            write_inventory(staging, COMPARISON_OUTPUT, file_records(staging))
    print(f"{table}\n\nreport: {out / 'report.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
