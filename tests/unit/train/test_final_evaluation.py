"""The evaluation after training: reused when this process already evaluated the kept weights, run otherwise."""

from types import SimpleNamespace

import pytest

from bioqa.train.trainer import BioQATrainer


def trainer_state(load_best: bool, best: str | None, step: int = 24, evaluations: dict | None = None):
    """What evaluate_final reads of a trainer: arguments, state, this process's evaluations; its calls are recorded."""
    calls: list = []
    fake = SimpleNamespace(
        args=SimpleNamespace(load_best_model_at_end=load_best),
        state=SimpleNamespace(
            best_model_checkpoint=best,
            best_global_step=int(best.rsplit("-", 1)[-1]) if best else None,
            global_step=step,
        ),
        evaluations=evaluations or {},
        predictions_name=None,
        last_predictions="predictions/eval-step-24.jsonl",
        calls=calls,
        log=lambda metrics: calls.append(("log", metrics)),
        copy_predictions=lambda path: calls.append(("copy", path)) or "predictions/eval-final.jsonl",
    )
    fake.kept_step = lambda: BioQATrainer.kept_step(fake)
    fake.evaluate = lambda: calls.append(("evaluate", fake.predictions_name)) or {"eval_rougeL": 0.5}
    return fake


@pytest.mark.parametrize(
    ("load_best", "best", "expected"),
    [
        (True, "out/checkpoint-16", 16),  # the Trainer loaded the best checkpoint at the end
        (True, None, 24),  # nothing on record: the last weights stay
        (False, "out/checkpoint-16", 24),  # best tracked, but the last weights are kept
    ],
)
def test_kept_step_is_the_step_of_the_weights_training_ends_with(load_best, best, expected):
    assert BioQATrainer.kept_step(trainer_state(load_best, best)) == expected


def test_final_evaluation_reuses_the_kept_steps_evaluation():
    scores = {"eval_rougeL": 0.31, "eval_loss": 2.0}
    evaluations = {16: (scores, "predictions/eval-step-16.jsonl"), 24: ({"eval_rougeL": 0.2}, "p24")}
    fake = trainer_state(True, "out/checkpoint-16", evaluations=evaluations)
    assert BioQATrainer.evaluate_final(fake) == scores
    # logged again (console, TensorBoard, log_history), the best step's answers copied to eval-final.jsonl
    assert fake.calls == [("log", scores), ("copy", "predictions/eval-step-16.jsonl")]
    assert fake.last_predictions == "predictions/eval-final.jsonl"


def test_final_evaluation_without_generated_answers_copies_nothing():
    fake = trainer_state(True, "out/checkpoint-16", evaluations={16: ({"eval_loss": 2.0}, None)})
    assert BioQATrainer.evaluate_final(fake) == {"eval_loss": 2.0}
    assert fake.calls == [("log", {"eval_loss": 2.0})] and fake.last_predictions is None


def test_final_evaluation_runs_when_this_process_never_evaluated_the_kept_weights():
    # a resumed run: the best checkpoint's evaluation happened before the restart
    fake = trainer_state(True, "out/checkpoint-8", evaluations={24: ({"eval_rougeL": 0.2}, "p24")})
    assert BioQATrainer.evaluate_final(fake) == {"eval_rougeL": 0.5}
    assert fake.calls == [("evaluate", "eval-final")] and fake.predictions_name is None
