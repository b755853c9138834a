"""metrics_utils against published values: the test suites of rouge-score, sacreBLEU and NLTK and
the examples of the evaluate 0.4.6 scripts (tests/unit/evaluate/metric_cases.json, each case with its source).

Each case is checked to its own tolerance: exact published values to 1e-7 or tighter, values that
the source itself rounded (e.g. 0.6944) to that rounding. Every case is also checked against the
straightforward library calls of tests/evaluate_reference.py to 1e-9.
"""

import json
from pathlib import Path

import pytest

import evaluate_reference as reference
import metrics_utils

CASES = json.loads((Path(__file__).parent / "metric_cases.json").read_text(encoding="utf-8"))["cases"]


def our_options(case: dict) -> dict:
    """Translate an evaluate metric's keyword arguments into compute_metrics options."""
    kwargs = dict(case["kwargs"])
    if case["metric"] == "rouge":
        return {
            "metrics": ("rouge",),
            "rouge_types": kwargs.get("rouge_types", metrics_utils.ROUGE_TYPES),
            "use_stemmer": kwargs.get("use_stemmer", False),
        }
    if case["metric"] == "sacrebleu":
        if "use_effective_order" in kwargs:
            kwargs["effective_order"] = kwargs.pop("use_effective_order")
        return {"metrics": ("bleu",), "bleu_options": kwargs}
    return {"metrics": ("meteor",)}


def our_values(case: dict) -> dict:
    options = our_options(case)
    if case["kwargs"].get("use_aggregator") is False:
        rows = metrics_utils.per_example_scores(case["predictions"], case["references"], **options)
        return {key: [row[key] for row in rows] for key in case["expected"]}
    result = metrics_utils.compute_metrics(case["predictions"], case["references"], **options)
    return {"score" if key == "bleu" else key: value for key, value in result.items()}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_published_value(case):
    values = our_values(case)
    for key, expected in case["expected"].items():
        assert values[key] == pytest.approx(expected, abs=case["tolerance"]), case["source"]


def library_values(case: dict) -> dict:
    preds, refs, kwargs = case["predictions"], case["references"], dict(case["kwargs"])
    if case["metric"] == "rouge":
        if kwargs.pop("use_aggregator", True) is False:
            return reference.evaluate_rouge(preds, refs, use_aggregator=False, **kwargs)
        return reference.mean_rouge(preds, refs, **kwargs)
    if case["metric"] == "sacrebleu":
        return {"score": reference.evaluate_sacrebleu(preds, refs, **kwargs)}
    return {"meteor": reference.evaluate_meteor(preds, refs)}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_equals_library_calls(case):
    values, expected = our_values(case), library_values(case)
    for key in case["expected"]:
        assert values[key] == pytest.approx(expected[key], abs=1e-9)
