"""Did fine-tuning help? Compare two prediction files over the same examples.

    python -m bioqa.comparison --baseline outputs/zero-shot/predictions.jsonl \\
        --candidate outputs/fine-tuned/predictions.jsonl --output_dir outputs/report

Writes into --output_dir: report.md (each metric for both systems, the difference, its paired
bootstrap 95% interval and p-value; the examples ROUGE-L moved most either way; answer lengths),
comparison.json (the same numbers), scores.png (per-example score distributions of both systems)
and, given a trainer_state.json (found next to the candidate's predictions, or --trainer_state),
training_curves.png. Both files are re-scored with metrics_utils, so their numbers are comparable
whatever wrote them.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bioqa.metrics import paired_bootstrap, score_predictions
from bioqa.predictions import read_prediction_file
from bioqa.outputs import COMPARISON_OUTPUT, check_not_an_input, check_output_folder, output_lock, run_folder
from bioqa.runfiles import (UsageError, build_parser, parse_arguments, raise_problems, run_main, staged_folder,
                            write_json_atomic)

METRIC_ORDER = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "meteor")


@dataclass
class CompareArguments:
    baseline: str = field(metadata={"help": "predictions.jsonl of the reference system (e.g. zero-shot)."})
    candidate: str = field(metadata={"help": "predictions.jsonl of the system to compare (e.g. fine-tuned)."})
    output_dir: str = field(default="outputs/report", metadata={"help": "Folder for report.md, comparison.json and the plots."})
    baseline_name: str = field(default="zero-shot", metadata={"help": "Name of the baseline in the report."})
    candidate_name: str = field(default="fine-tuned", metadata={"help": "Name of the candidate in the report."})
    trainer_state: Optional[str] = field(default=None, metadata={"help": "trainer_state.json for the training curves; default: next to --candidate."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Paired bootstrap resamples."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    examples_shown: int = field(default=5, metadata={"help": "How many best and worst examples (by ROUGE-L difference) report.md lists."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier comparison in --output_dir (a folder holding other files is still refused)."})


def aligned(baseline: list[dict], candidate: list[dict], names: tuple[str, str]) -> list[dict]:
    """The candidate's rows in the baseline's order; UsageError naming the first id one file lacks."""
    for rows, name in ((baseline, names[0]), (candidate, names[1])):
        ids = [row["id"] for row in rows]
        if len(ids) != len(set(ids)):
            raise UsageError(f"{name} has duplicate example ids (e.g. {next(i for i in ids if ids.count(i) > 1)!r})")
    by_id = {row["id"]: row for row in candidate}
    baseline_ids = {row["id"] for row in baseline}
    missing = next((row["id"] for row in baseline if row["id"] not in by_id), None)
    if missing is not None:
        raise UsageError(f"the files cover different examples: id {missing!r} is in {names[0]} but not in {names[1]}")
    extra = next((row["id"] for row in candidate if row["id"] not in baseline_ids), None)
    if extra is not None:
        raise UsageError(f"the files cover different examples: id {extra!r} is in {names[1]} but not in {names[0]}")
    paired = [by_id[row["id"]] for row in baseline]
    for key in ("question", "reference"):
        differs = next((a["id"] for a, b in zip(baseline, paired) if a.get(key) != b.get(key)), None)
        if differs is not None:
            raise UsageError(f"the files are not answers to the same questions: id {differs!r} has another {key} in "
                             f"{names[1]} than in {names[0]}; predict both on the same test data (same file, "
                             "--split_seed and --id_field)")
    return paired


def compare(baseline: list[dict], candidate: list[dict], samples: int, seed: int) -> dict[str, Any]:
    """Scores of both systems on the baseline's references, and the paired test per metric."""
    references = [row["reference"] for row in baseline]
    scores = {name: score_predictions([r["prediction"] for r in rows], references)
              for name, rows in (("baseline", baseline), ("candidate", candidate))}
    corpus = {name: s.corpus() for name, s in scores.items()}
    test = paired_bootstrap(scores["baseline"], scores["candidate"], samples, seed)
    table = {m: {"baseline": corpus["baseline"][m], "candidate": corpus["candidate"][m], **test[m]}
             for m in METRIC_ORDER if m in test}
    return {"num_examples": len(references), "metrics": table, "scores": scores,
            "lengths": {name: length_stats(rows) for name, rows in (("baseline", baseline), ("candidate", candidate))},
            "bootstrap": {"samples": samples, "seed": seed, "interval": "percentile 95%"}}


def length_stats(rows: list[dict]) -> dict[str, float]:
    words = [len(row["prediction"].split()) for row in rows]
    return {"mean_words": statistics.fmean(words), "median_words": statistics.median(words), "max_words": max(words),
            "empty": words.count(0), "reference_mean_words": statistics.fmean(len(r["reference"].split()) for r in rows)}


def find_trainer_state(args: CompareArguments) -> Path | None:
    if args.trainer_state:
        if not Path(args.trainer_state).is_file():
            raise UsageError(f"--trainer_state {args.trainer_state} does not exist; give a trainer_state.json")
        return Path(args.trainer_state)
    candidate = Path(args.candidate).parent / "trainer_state.json"
    return candidate if candidate.is_file() else None


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
    check_not_an_input(out, "--output_dir", {
        "baseline predictions": args.baseline, "candidate predictions": args.candidate, "trainer state": state,
        "baseline's run": run_folder(args.baseline), "candidate's run": run_folder(args.candidate)})
    names = (args.baseline_name, args.candidate_name)
    baseline = read_prediction_file(args.baseline)
    candidate = aligned(baseline, read_prediction_file(args.candidate), names)
    with output_lock(out, "--output_dir"):
        check_output_folder(out, "--output_dir", COMPARISON_OUTPUT, args.overwrite, "pass --overwrite to replace it")
        result = compare(baseline, candidate, args.bootstrap_samples, args.seed)
        with staged_folder(out) as staging:
            table = write_report(staging, result, baseline, candidate, names, state, args.examples_shown)
            write_json_atomic(staging / "comparison.json", {k: v for k, v in result.items() if k != "scores"} |
                              {"baseline": args.baseline, "candidate": args.candidate, "names": list(names)})
    print(f"{table}\n\nreport: {out / 'report.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
