"""Did fine-tuning help? Two prediction files over the same examples, paired by id and checked to
answer the same questions, re-scored with the toolkit's metrics, and compared with a paired bootstrap
per metric; with labels also by accuracy and macro-F1, McNemar's exact test and the questions that
flipped. `bioqa.compare` (bioqa/api.py) reads the files and writes the report; the command around it is
bioqa/cli/compare.py (`bioqa-compare`, `python -m bioqa.comparison`).
"""

from __future__ import annotations

import statistics
from typing import Any

from bioqa.data.labels import LabelScores, mcnemar_exact
from bioqa.errors import InputError, option
from bioqa.evaluate.bootstrap import paired_bootstrap
from bioqa.evaluate.metrics import DEFAULT_METRICS, score_names
from bioqa.evaluate.predictions import PredictionRow, rescored
from bioqa.evaluate.registry import metrics_reporting


def aligned(
    baseline: list[PredictionRow], candidate: list[PredictionRow], names: tuple[str, str]
) -> list[PredictionRow]:
    """The candidate's rows in the baseline's order; InputError naming the first id one file lacks."""
    for rows, name in ((baseline, names[0]), (candidate, names[1])):
        ids = [row["id"] for row in rows]
        if len(ids) != len(set(ids)):
            raise InputError(f"{name} has duplicate example ids (e.g. {next(i for i in ids if ids.count(i) > 1)!r})")
    by_id = {row["id"]: row for row in candidate}
    baseline_ids = {row["id"] for row in baseline}
    missing = next((row["id"] for row in baseline if row["id"] not in by_id), None)
    if missing is not None:
        raise InputError(f"the files cover different examples: id {missing!r} is in {names[0]} but not in {names[1]}")
    extra = next((row["id"] for row in candidate if row["id"] not in baseline_ids), None)
    if extra is not None:
        raise InputError(f"the files cover different examples: id {extra!r} is in {names[1]} but not in {names[0]}")
    paired = [by_id[row["id"]] for row in baseline]
    # a label only one file holds (a recipe that learns the decision against one that writes the answer alone) is
    # no contradiction: the files then compare on what both hold, their answers
    labelled = "label" in baseline[0] and "label" in paired[0]
    for key in ("question", "reference", "label") if labelled else ("question", "reference"):
        differs = next((a["id"] for a, b in zip(baseline, paired) if a.get(key) != b.get(key)), None)
        if differs is not None:
            raise InputError(
                f"the files are not answers to the same questions: id {differs!r} has another {key} in "
                f"{names[1]} than in {names[0]}; predict both on the same test data (same file, "
                f"{option('split_seed')} and {option('id_field')})"
            )
    return paired


# What a rescored file holds (bioqa.evaluate.predictions.ScoredAnswers): {kind: (prefix of its metrics, attribute)}.
PARTS = {"text": ("", "text"), "generated": ("", "generated"), "loglik": ("loglik_", "loglik")}


def in_order(table: dict[str, Any], metrics: tuple[str, ...]) -> dict[str, Any]:
    """A comparison's rows in the report's order: the text metrics, then the label metrics."""
    order = [*score_names(metrics), "accuracy", "macro_f1", "loglik_accuracy", "loglik_macro_f1"]
    return {name: table[name] for name in order if name in table}


def compare_rows(
    baseline: list[PredictionRow],
    candidate: list[PredictionRow],
    samples: int,
    seed: int,
    labels: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Scores of both systems, and the paired bootstrap test of every metric both files allow: the text metrics
    of generated answers, and with a label set accuracy and macro-F1 (plus an exact McNemar test of accuracy,
    both confusion matrices and the questions that flipped)."""
    metrics = text_metrics(baseline, candidate)
    scored = {
        name: rescored(rows, labels, metrics) for name, rows in (("baseline", baseline), ("candidate", candidate))
    }
    table, scores, label_results = {}, {}, {}
    for kind, (prefix, attribute) in PARTS.items():
        a, b = getattr(scored["baseline"], attribute), getattr(scored["candidate"], attribute)
        if a is None or b is None:
            continue
        test = paired_bootstrap(a, b, samples, seed)
        whole = slice(None)
        base, cand = a.resampled(whole), b.resampled(whole)
        table.update({prefix + m: {"baseline": base[m], "candidate": cand[m], **test[m]} for m in a.names if m in test})
        if kind == "text":
            scores = {"baseline": a, "candidate": b}
        else:
            label_results[kind] = label_comparison(a, b, [row["id"] for row in baseline])
    return {
        "num_examples": len(baseline),
        "metrics": in_order(table, metrics),
        "scores": scores,
        "labels": label_results,
        "label_set": list(labels) if labels else None,
        "lengths": {name: length_stats(rows) for name, rows in (("baseline", baseline), ("candidate", candidate))},
        "bootstrap": {"samples": samples, "seed": seed, "interval": "percentile 95%"},
    }


def text_metrics(baseline: list[PredictionRow], candidate: list[PredictionRow]) -> tuple[str, ...]:
    """The text metrics both files are rescored with: the defaults and every registered metric either file was
    scored with (so the two compare on the same metrics); none for labels chosen by log-likelihood alone, which
    are not generated text."""
    if any("loglik_label" in rows[0] and "predicted_label" not in rows[0] for rows in (baseline, candidate)):
        return ()
    carried = metrics_reporting([*baseline[0], *candidate[0]])
    return tuple(dict.fromkeys([*DEFAULT_METRICS, *carried]))


def label_comparison(baseline: LabelScores, candidate: LabelScores, ids: list[str]) -> dict[str, Any]:
    """McNemar's exact test of accuracy, both confusion matrices, and the ids that flipped either way."""
    right_a, right_b = baseline.correct(), candidate.correct()
    return {
        "mcnemar": mcnemar_exact(right_a, right_b),
        "confusion": {"baseline": baseline.corpus()["confusion"], "candidate": candidate.corpus()["confusion"]},
        "right_to_wrong": [i for i, a, b in zip(ids, right_a, right_b) if a and not b],
        "wrong_to_right": [i for i, a, b in zip(ids, right_a, right_b) if b and not a],
    }


def label_set_of(rows: list[PredictionRow]) -> tuple[str, ...] | None:
    """Without a declared label set: the gold and predicted labels the rows hold (None without labels)."""
    found = {row[key] for row in rows for key in ("label", "predicted_label", "loglik_label") if row.get(key)}
    return tuple(sorted(found)) if found and "label" in rows[0] else None


def length_stats(rows: list[PredictionRow]) -> dict[str, float]:
    words = [len(row["prediction"].split()) for row in rows]
    return {
        "mean_words": statistics.fmean(words),
        "median_words": statistics.median(words),
        "max_words": max(words),
        "empty": words.count(0),
        "reference_mean_words": statistics.fmean(len(r["reference"].split()) for r in rows),
    }
