"""Does recipe A beat recipe B, or did one seed get lucky? Several runs per side (one prediction file per seed, all
answering the same test questions), every metric both sides allow compared by a two-level bootstrap: the runs of
each side, then the questions within the paired set (bioqa.evaluate.bootstrap.two_level_bootstrap). Each side's
mean and standard deviation over its runs, and every run's own scores, are reported beside the interval.
`bioqa.compare` reads the files, checks them and writes report.md and comparison.json.
"""

from __future__ import annotations

import statistics
from typing import Any

from bioqa.errors import InputError, option
from bioqa.evaluate.bootstrap import MIN_EXAMPLES, two_level_bootstrap
from bioqa.evaluate.comparison import PARTS, in_order, text_metrics
from bioqa.evaluate.predictions import PredictionRow, rescored
from bioqa.evaluate.report import tested_cells, top_of

SIDES = ("baseline", "candidate")


def check_runs(runs: dict[str, list[dict[str, Any]]]) -> None:
    """InputError for a side with one run (no spread to resample), or the same run or seed twice on a side.
    `runs` maps each side to its runs' {"file", "seed"} (seed None where no run_config.yaml says it)."""
    counts = {side: len(found) for side, found in runs.items()}
    if min(counts.values()) < 2:
        raise InputError(
            f"a comparison over seeds needs two or more runs on each side, got {counts['baseline']} baseline and "
            f"{counts['candidate']} candidate; give every seed's predictions.jsonl (or the folder of a seeds "
            f"study) on both sides, or one file per side for a paired comparison of two runs"
        )
    everyone = [run["real"] for found in runs.values() for run in found]
    twice = next((run for found in runs.values() for run in found if everyone.count(run["real"]) > 1), None)
    if twice is not None:
        raise InputError(f"{twice['file']} is given twice; give each run once")
    for side, found in runs.items():
        seeds = [run["seed"] for run in found if run["seed"] is not None]
        repeated = next((s for s in seeds if seeds.count(s) > 1), None)
        if repeated is not None:
            raise InputError(
                f"two {side} runs were trained with seed {repeated}; a comparison over seeds needs each seed once "
                f"per side (train the others with {option('seeds')})"
            )


def compare_runs(
    baseline: list[list[PredictionRow]],
    candidate: list[list[PredictionRow]],
    samples: int,
    seed: int,
    labels: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Both sides' runs (rows already aligned to the same questions), rescored with the same metrics: per metric
    each side's mean and standard deviation over its runs, the difference of the means with its two-level
    bootstrap interval and p-value, and every run's own scores."""
    metrics = text_metrics(baseline[0], candidate[0])
    scored = [[rescored(rows, labels, metrics) for rows in side] for side in (baseline, candidate)]
    table: dict[str, dict[str, Any]] = {}
    per_run: dict[str, list[dict[str, float]]] = {side: [{} for _ in runs] for side, runs in zip(SIDES, scored)}
    for prefix, attribute in PARTS.values():
        parts = [[getattr(answers, attribute) for answers in side] for side in scored]
        if any(part is None for side in parts for part in side):
            continue
        test = two_level_bootstrap(parts[0], parts[1], samples, seed)
        for side, runs in zip(SIDES, parts):
            for own, run in zip(per_run[side], runs):
                own.update({prefix + m: v for m, v in run.resampled(slice(None)).items() if m in test})
        for m, tested in test.items():
            values = {side: [own[prefix + m] for own in per_run[side]] for side in SIDES}
            table[prefix + m] = {
                **{side: statistics.fmean(v) for side, v in values.items()},
                **{f"{side}_sd": statistics.stdev(v) for side, v in values.items()},
                **tested,
            }
    return {
        "num_examples": len(baseline[0]),
        "runs": {side: len(runs) for side, runs in zip(SIDES, scored)},
        "metrics": in_order(table, metrics),
        "per_run": per_run,
        "labels": {},
        "bootstrap": {"samples": samples, "seed": seed, "interval": "percentile 95%", "levels": "runs, then questions"},
    }


def _digits(metric: str) -> int:
    return 2 if top_of(metric) > 1 else 4


def means_table(result: dict[str, Any], names: tuple[str, str]) -> str:
    """Per metric: each side's mean (standard deviation) over its runs, the difference, its interval and p."""
    runs = result["runs"]
    lines = [
        f"| metric | {names[0]} ({runs['baseline']} runs) | {names[1]} ({runs['candidate']} runs) | difference | "
        "95% CI (runs, then questions) | p |",
        "|---|---|---|---|---|---|",
    ]
    for metric, row in result["metrics"].items():
        d = _digits(metric)
        interval, p_value = tested_cells(row, d)
        lines.append(
            f"| {metric} | {row['baseline']:.{d}f} ({row['baseline_sd']:.{d}f}) | {row['candidate']:.{d}f} "
            f"({row['candidate_sd']:.{d}f}) | {row['difference']:+.{d}f} | {interval} | {p_value} |"
        )
    return "\n".join(lines)


def runs_table(result: dict[str, Any], names: tuple[str, str], runs: dict[str, list[dict[str, Any]]]) -> str:
    """Every run's own score on every metric: the spread the interval accounts for."""
    metrics = list(result["metrics"])
    lines = [f"| side | seed | run | {' | '.join(metrics)} |", "|---|---|---|" + "---|" * len(metrics)]
    for side, name in zip(SIDES, names):
        for run, scores in zip(runs[side], result["per_run"][side]):
            shown = " | ".join(f"{scores[m]:.{_digits(m)}f}" for m in metrics)
            seed = "?" if run["seed"] is None else run["seed"]
            lines.append(f"| {name} | {seed} | {run['file']} | {shown} |")
    return "\n".join(lines)


def report_text(result: dict[str, Any], names: tuple[str, str], runs: dict[str, list[dict[str, Any]]]) -> str:
    boot = result["bootstrap"]
    how = (
        f"Intervals and p-values from a two-level bootstrap ({boot['samples']} resamples, seed {boot['seed']}): each "
        "resample draws each side's runs with replacement, then the questions with replacement (the same questions "
        "for both sides); a side scores the mean of its drawn runs. The spread between seeds is part of the "
        "interval, so a difference it excludes 0 from is not one lucky seed."
        if result["num_examples"] >= MIN_EXAMPLES
        else f"No interval or p-value: {result['num_examples']} questions are fewer than {MIN_EXAMPLES}."
    )
    return (
        f"# {names[1]} against {names[0]} over seeds, on the same {result['num_examples']} questions\n\n"
        f"Mean (standard deviation) over each side's runs.\n\n{means_table(result, names)}\n\n{how}\n\n"
        f"## Each run\n\n{runs_table(result, names, runs)}\n"
    )
