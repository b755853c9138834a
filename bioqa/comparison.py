"""Did fine-tuning help? Two prediction files over the same examples, paired by id and checked to
answer the same questions, re-scored with the toolkit's metrics, and compared with a paired bootstrap
per metric. The command around it is bioqa/cli/compare.py (`bioqa-compare`, `python -m bioqa.comparison`).
"""

from __future__ import annotations

import statistics
from typing import Any

from bioqa.bootstrap import paired_bootstrap
from bioqa.errors import InputError, option
from bioqa.metrics import SCORE_NAMES, score_predictions
from bioqa.predictions import PredictionRow


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
    for key in ("question", "reference"):
        differs = next((a["id"] for a, b in zip(baseline, paired) if a.get(key) != b.get(key)), None)
        if differs is not None:
            raise InputError(
                f"the files are not answers to the same questions: id {differs!r} has another {key} in "
                f"{names[1]} than in {names[0]}; predict both on the same test data (same file, "
                f"{option('split_seed')} and {option('id_field')})"
            )
    return paired


def compare(baseline: list[PredictionRow], candidate: list[PredictionRow], samples: int, seed: int) -> dict[str, Any]:
    """Scores of both systems on the baseline's references, and the paired test per metric."""
    references = [row["reference"] for row in baseline]
    scores = {
        name: score_predictions([r["prediction"] for r in rows], references)
        for name, rows in (("baseline", baseline), ("candidate", candidate))
    }
    corpus = {name: s.corpus() for name, s in scores.items()}
    test = paired_bootstrap(scores["baseline"], scores["candidate"], samples, seed)
    table = {
        m: {"baseline": corpus["baseline"][m], "candidate": corpus["candidate"][m], **test[m]}
        for m in SCORE_NAMES
        if m in test
    }
    return {
        "num_examples": len(references),
        "metrics": table,
        "scores": scores,
        "lengths": {name: length_stats(rows) for name, rows in (("baseline", baseline), ("candidate", candidate))},
        "bootstrap": {"samples": samples, "seed": seed, "interval": "percentile 95%"},
    }


def length_stats(rows: list[PredictionRow]) -> dict[str, float]:
    words = [len(row["prediction"].split()) for row in rows]
    return {
        "mean_words": statistics.fmean(words),
        "median_words": statistics.median(words),
        "max_words": max(words),
        "empty": words.count(0),
        "reference_mean_words": statistics.fmean(len(r["reference"].split()) for r in rows),
    }


if __name__ == "__main__":
    import sys

    from bioqa.cli.compare import main

    sys.exit(main())
