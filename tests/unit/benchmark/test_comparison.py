"""The forgetting check on hand-made benchmark rows: accuracies, the paired difference, McNemar, the flips."""

import pytest

from bioqa.benchmark.comparison import benchmark_comparison, is_benchmark_rows, report
from bioqa.benchmark.results import ALL
from bioqa.errors import InputError


def rows(task: str, correct: list[bool]) -> list[dict]:
    return [
        {"id": f"q{i}", "task": task, "gold": 0, "chosen": 0 if c else 1, "correct": c} for i, c in enumerate(correct)
    ]


def test_two_tasks_compared_per_task_and_over_all_by_hand():
    base = rows("a", [True] * 6 + [False] * 6) + rows("b", [True, False])
    cand = rows("a", [True] * 4 + [False] * 2 + [True] * 5 + [False]) + rows("b", [True, True])
    result = benchmark_comparison((base, cand), ("x.jsonl", "y.jsonl"), samples=300, seed=1)
    a = result["a"]
    assert (a["baseline"], a["candidate"], a["difference"]) == pytest.approx((0.5, 9 / 12, 0.25))
    assert a["mcnemar"]["baseline_only_right"] == 2 and a["mcnemar"]["candidate_only_right"] == 5
    assert a["mcnemar"]["p_value"] == pytest.approx(2 * (1 + 7 + 21) / 2**7)  # two-sided binomial, 2 of 7
    assert a["flipped"]["to_wrong"] == ["a/q4", "a/q5"] and len(a["flipped"]["to_right"]) == 5
    assert a["ci_low"] <= 0.25 <= a["ci_high"]
    assert result["b"]["ci_low"] is None  # two questions: no interval
    assert result[ALL]["questions"] == 14 and result[ALL]["difference"] == pytest.approx(11 / 14 - 7 / 14)
    table, text = report(result, ("base", "adapter"))
    assert "| a | 12 | 0.500 | 0.750 | +0.250 [" in table and "* a: 2 right only with base: a/q4, a/q5" in text


def test_files_of_other_tasks_or_questions_are_refused():
    base = rows("a", [True, False])
    assert is_benchmark_rows(base) and not is_benchmark_rows([{"id": "1", "reference": "r", "prediction": "p"}])
    with pytest.raises(InputError, match="x.jsonl holds the tasks a and y.jsonl b; compare the results of the same"):
        benchmark_comparison((base, rows("b", [True, False])), ("x.jsonl", "y.jsonl"), 100, 0)
    with pytest.raises(InputError, match="task a: 1 questions are in one file only"):
        benchmark_comparison((base, rows("a", [True])), ("x.jsonl", "y.jsonl"), 100, 0)
    with pytest.raises(InputError, match='y.jsonl row 1 has correct "yes", not true or false'):
        benchmark_comparison((base, [{**base[0], "correct": "yes"}]), ("x.jsonl", "y.jsonl"), 100, 0)
