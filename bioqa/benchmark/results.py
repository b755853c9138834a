"""What a benchmark found: one row per question in the toolkit's prediction format (id, task, gold, chosen option,
correct, each option's log-likelihood), and per task the accuracy with its seeded percentile bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bioqa.benchmark.tasks import LOCAL, LOCAL_TASK
from bioqa.evaluate.bootstrap import bootstrap_intervals

ALL = "all tasks"


@dataclass(frozen=True)
class Accuracy:
    """Right or wrong per question, resamplable for bootstrap intervals (bioqa.evaluate.bootstrap.Resamplable)."""

    correct: tuple[bool, ...]
    names: tuple[str, ...] = ("accuracy",)

    def __len__(self) -> int:
        return len(self.correct)

    def resampled(self, indices: Any) -> dict[str, float]:
        import numpy as np

        return {"accuracy": float(np.asarray(self.correct, dtype=float)[indices].mean())}


def question_rows(samples: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """lm-eval's logged samples of multiple-choice tasks as prediction rows: the chosen option is the most likely
    one (lm-eval's `acc`); the local task's gold and chosen options are its labels, a Hub task's their indices."""
    rows = []
    for task, logged in samples.items():
        for sample in logged:
            logliks = [float(response[0]) for response in sample["filtered_resps"]]
            chosen = max(range(len(logliks)), key=logliks.__getitem__)
            gold, doc = int(sample["target"]), sample["doc"]
            names = doc.get("labels") if task == LOCAL_TASK else None
            rows.append(
                {
                    "id": str(doc["id"]) if task == LOCAL_TASK else f"{task}-{sample['doc_id']}",
                    "task": LOCAL if task == LOCAL_TASK else task,
                    "gold": names[gold] if names else gold,
                    "chosen": names[chosen] if names else chosen,
                    "correct": chosen == gold,
                    "logliks": logliks,
                }
            )
    return rows


def task_scores(rows: list[dict[str, Any]], samples: int, seed: int) -> dict[str, dict[str, Any]]:
    """{task (and all tasks together): {accuracy, ci95 (None below ten questions or without resamples), questions}}."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    groups = {task: [row for row in rows if row["task"] == task] for task in tasks}
    if len(tasks) > 1:
        groups[ALL] = rows
    scores = {}
    for name, group in groups.items():
        accuracy = Accuracy(tuple(bool(row["correct"]) for row in group))
        interval = bootstrap_intervals(accuracy, samples, seed=seed).get("accuracy") if samples > 0 else None
        scores[name] = {
            "accuracy": accuracy.resampled(slice(None))["accuracy"],
            "ci95": list(interval) if interval else None,
            "questions": len(group),
        }
    return scores


def scores_table(scores: dict[str, dict[str, Any]], model: str) -> str:
    lines = [f"| task | questions | accuracy of {model} | 95% CI |", "|---|---|---|---|"]
    for task, score in scores.items():
        low_high = "n/a" if score["ci95"] is None else f"[{score['ci95'][0]:.3f}, {score['ci95'][1]:.3f}]"
        lines.append(f"| {task} | {score['questions']} | {score['accuracy']:.3f} | {low_high} |")
    return "\n".join(lines)
