"""The forgetting check: two benchmark result files (`benchmark_predictions.jsonl` of bioqa-benchmark) on the same
questions, the base against its adapter or two adapters. Per task and over all tasks: both accuracies, the
difference with its paired bootstrap 95% interval and p-value, McNemar's exact test, and the questions that flipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bioqa.benchmark.results import ALL, Accuracy
from bioqa.data.labels import mcnemar_exact
from bioqa.errors import InputError, option, shown
from bioqa.evaluate.bootstrap import paired_bootstrap
from bioqa.io.files import write_json_atomic, write_text_atomic

KEYS = ("id", "task", "gold", "chosen", "correct")
FLIPS_SHOWN = 10  # question ids listed per direction in report.md (comparison.json holds them all)


def is_benchmark_rows(rows: list[dict[str, Any]]) -> bool:
    """Whether rows are a benchmark's (a question's chosen option and whether it is right), not generated answers."""
    return bool(rows) and all(key in rows[0] for key in KEYS) and "prediction" not in rows[0]


def checked_rows(rows: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    for number, row in enumerate(rows, start=1):
        missing = [key for key in KEYS if key not in row]
        if missing or not isinstance(row["correct"], bool):
            what = (
                f"lacks {', '.join(missing)}" if missing else f"has correct {shown(row['correct'])}, not true or false"
            )
            raise InputError(f"{path} row {number} {what}; give a benchmark_predictions.jsonl of bioqa-benchmark")
    return rows


def paired_rows(baseline: list[dict], candidate: list[dict], files: tuple[str, str]) -> dict[str, list[tuple]]:
    """{task: [(baseline row, candidate row) per question]}; InputError for other tasks or other questions."""
    tasks = [list(dict.fromkeys(row["task"] for row in rows)) for rows in (baseline, candidate)]
    if set(tasks[0]) != set(tasks[1]):
        raise InputError(
            f"{files[0]} holds the tasks {', '.join(tasks[0])} and {files[1]} {', '.join(tasks[1])}; compare the "
            f"results of the same tasks (the same {option('tasks')} and {option('limit')} on both sides)"
        )
    pairs = {}
    for task in tasks[0]:
        by_id = [{str(row["id"]): row for row in rows if row["task"] == task} for rows in (baseline, candidate)]
        only = [key for key in by_id[0] if key not in by_id[1]] + [key for key in by_id[1] if key not in by_id[0]]
        if only:
            raise InputError(
                f"task {task}: {len(only)} questions are in one file only (e.g. {only[0]}); compare results on the "
                f"same questions (the same data, {option('limit')} and {option('max_predict_samples')} on both sides)"
            )
        pairs[task] = [(row, by_id[1][key]) for key, row in by_id[0].items()]
    return pairs


def compared(pairs: dict[str, list[tuple]], samples: int, seed: int) -> dict[str, dict[str, Any]]:
    groups = dict(pairs)
    if len(pairs) > 1:
        groups[ALL] = [pair for task_pairs in pairs.values() for pair in task_pairs]
    return {task: _pair_scores(group, samples, seed) for task, group in groups.items()}


def _pair_scores(pairs: list[tuple], samples: int, seed: int) -> dict[str, Any]:
    base = Accuracy(tuple(b["correct"] for b, _ in pairs))
    cand = Accuracy(tuple(c["correct"] for _, c in pairs))
    whole = slice(None)
    test = paired_bootstrap(base, cand, samples, seed)["accuracy"]
    flipped = {
        "to_right": [f"{b['task']}/{b['id']}" for b, c in pairs if c["correct"] and not b["correct"]],
        "to_wrong": [f"{b['task']}/{b['id']}" for b, c in pairs if b["correct"] and not c["correct"]],
    }
    return {
        "questions": len(pairs),
        "baseline": base.resampled(whole)["accuracy"],
        "candidate": cand.resampled(whole)["accuracy"],
        **test,
        "mcnemar": mcnemar_exact(base.correct, cand.correct),
        "flipped": flipped,
    }


def report(result: dict[str, dict[str, Any]], names: tuple[str, str]) -> tuple[str, str]:
    """(the table, report.md): per task both accuracies, the difference with its interval, McNemar, the flips."""
    lines = [
        f"| task | questions | {names[0]} | {names[1]} | difference [95% CI] | McNemar p (only {names[0]} right, "
        f"only {names[1]} right) |",
        "|---|---|---|---|---|---|",
    ]
    for task, r in result.items():
        interval = "" if r["ci_low"] is None else f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        m = r["mcnemar"]
        lines.append(
            f"| {task} | {r['questions']} | {r['baseline']:.3f} | {r['candidate']:.3f} | {r['difference']:+.3f}"
            f"{interval} | {m['p_value']:.3g} ({m['baseline_only_right']}, {m['candidate_only_right']}) |"
        )
    table = "\n".join(lines)
    flips = [
        f"* {task}: {len(r['flipped'][way])} {label}: {', '.join(r['flipped'][way][:FLIPS_SHOWN]) or 'none'}"
        + (" ..." if len(r["flipped"][way]) > FLIPS_SHOWN else "")
        for task, r in result.items()
        if task != ALL
        for way, label in (("to_right", f"right only with {names[1]}"), ("to_wrong", f"right only with {names[0]}"))
    ]
    text = (
        f"# {names[1]} against {names[0]} on the same benchmark questions\n\n{table}\n\n"
        "Paired bootstrap over questions; McNemar's exact test of the discordant pairs.\n\n"
        "## Questions that flipped\n\n" + "\n".join(flips) + "\n"
    )
    return table, text


def benchmark_comparison(
    rows: tuple[list[dict], list[dict]], files: tuple[str, str], samples: int, seed: int
) -> dict[str, dict[str, Any]]:
    checked = [checked_rows(r, f) for r, f in zip(rows, files, strict=True)]
    return compared(paired_rows(checked[0], checked[1], files), samples, seed)


def write_files(folder: Path, result: dict, text: str, details: dict) -> None:
    write_text_atomic(folder / "report.md", text)
    write_json_atomic(folder / "comparison.json", {**details, "benchmark": result})
