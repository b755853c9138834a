"""lm-eval's logged samples as prediction rows, accuracy with its interval, and the task names checked."""

import pytest

from bioqa.benchmark.results import ALL, question_rows, task_scores
from bioqa.benchmark.tasks import LOCAL, LOCAL_TASK, harness_tasks, task_problems


def sample(doc_id: int, target: int, logliks: list[float], doc: dict) -> dict:
    """A logged multiple-choice sample as lm-eval 0.4.13 writes it (only the keys read here)."""
    return {"doc_id": doc_id, "doc": doc, "target": target, "filtered_resps": [(x, False) for x in logliks]}


def test_rows_name_the_local_tasks_labels_and_a_hub_tasks_indices():
    labels = ["maybe", "no", "yes"]
    samples = {
        LOCAL_TASK: [sample(0, 2, [-9.0, -3.0, -1.0], {"id": "q7", "labels": labels})],
        "medmcqa": [sample(4, 0, [-2.0, -1.5, -8.0, -9.0], {"question": "..."})],
    }
    local, hub = question_rows(samples)
    assert local == {
        "id": "q7",
        "task": LOCAL,
        "gold": "yes",
        "chosen": "yes",
        "correct": True,
        "logliks": [-9.0, -3.0, -1.0],
    }
    assert (hub["id"], hub["task"], hub["gold"], hub["chosen"], hub["correct"]) == ("medmcqa-4", "medmcqa", 0, 1, False)


def test_accuracy_per_task_and_over_all_with_a_seeded_interval_from_ten_questions():
    rows = [{"task": "a", "correct": i % 4 != 0} for i in range(20)] + [{"task": "b", "correct": True}] * 5
    scores = task_scores(rows, samples=500, seed=3)
    assert scores["a"]["accuracy"] == 0.75 and scores["a"]["questions"] == 20
    low, high = scores["a"]["ci95"]
    assert 0.5 < low < 0.75 < high <= 0.95
    assert scores["b"]["ci95"] is None  # five questions: no interval (bootstrap.MIN_EXAMPLES)
    assert scores[ALL]["accuracy"] == pytest.approx(20 / 25) and scores[ALL]["questions"] == 25
    assert task_scores(rows, samples=500, seed=3) == scores and task_scores(rows, 0, 3)["a"]["ci95"] is None


def test_task_names_are_checked_against_lm_eval_and_the_network():
    known = {"pubmedqa", "medmcqa", "multimedqa"}
    assert task_problems([LOCAL, "pubmedqa"], known, online=True) == []
    unknown = task_problems(["pubmedqaa"], known, online=True)
    assert len(unknown) == 1 and "did you mean 'pubmedqa'" in unknown[0]
    offline = task_problems([LOCAL, "medmcqa"], known, online=False)
    assert len(offline) == 1 and "medmcqa loads its questions from the Hugging Face Hub" in offline[0]
    assert harness_tasks([LOCAL, "medmcqa"]) == [LOCAL_TASK, "medmcqa"]


def test_model_settings_the_benchmark_would_ignore_are_refused():
    from bioqa.benchmark.run import BenchmarkArguments, argument_problems
    from bioqa.settings import ModelArguments

    args = BenchmarkArguments(tasks=["local"], limit=0)
    problems = argument_problems(args, ["local"], ModelArguments(load_in_4bit=True))
    assert problems == [
        "load_in_4bit is a training setting the benchmark does not take; drop it",
        "limit must be positive, got 0",
    ]
    assert argument_problems(BenchmarkArguments(tasks=["local"]), [], ModelArguments()) == [
        f"tasks is empty; name lm-eval tasks or {LOCAL}"
    ]
