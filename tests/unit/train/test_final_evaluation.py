"""The evaluation after training, on a real Trainer over the tiny model: reused when this process already evaluated
the kept weights (logged again, its answers copied to eval-final.jsonl), run otherwise."""

import json

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import TrainingArguments

from bioqa.data import prompts
from bioqa.io.inventory import read_inventory
from bioqa.train.loss import AnswerOnlyCollator, answer_only_loss
from bioqa.train.trainer import BioQATrainer
from helpers import prompt_args
from tiny_models import build_model, qa_rows


def real_trainer(tokenizer, folder, load_best: bool, best_step: int | None, step: int = 24) -> BioQATrainer:
    """A Trainer whose state says training ended at `step`, with the best checkpoint at `best_step` (or none)."""
    torch.manual_seed(0)
    model = get_peft_model(build_model(tokenizer, seed=1), LoraConfig(r=4, target_modules="all-linear"))
    features, _ = prompts.encode_dataset(tokenizer, prompts.prompt_format(tokenizer, prompt_args()), qa_rows(4), 256)
    args = TrainingArguments(
        output_dir=str(folder),
        use_cpu=True,
        report_to="none",
        eval_strategy="steps",
        save_strategy="steps",
        load_best_model_at_end=load_best,
    )
    trainer = BioQATrainer(
        model=model,
        args=args,
        eval_dataset=Dataset.from_list(features),
        data_collator=AnswerOnlyCollator(tokenizer),
        compute_loss_func=answer_only_loss,  # the labels come unshifted, as the toolkit's Trainer takes them
    )
    trainer.state.global_step = step
    if best_step is not None:
        trainer.state.best_model_checkpoint = str(folder / f"checkpoint-{best_step}")
        trainer.state.best_global_step = best_step
    return trainer


@pytest.mark.parametrize(
    ("load_best", "best", "expected"),
    [
        (True, 16, 16),  # the Trainer loaded the best checkpoint at the end
        (True, None, 24),  # nothing on record: the last weights stay
        (False, 16, 24),  # best tracked, but the last weights are kept
    ],
)
def test_kept_step_is_the_step_of_the_weights_training_ends_with(tokenizer, tmp_path, load_best, best, expected):
    assert real_trainer(tokenizer, tmp_path, load_best, best).kept_step() == expected


def test_final_evaluation_reuses_the_kept_steps_evaluation(tokenizer, tmp_path):
    trainer = real_trainer(tokenizer, tmp_path, True, 16)
    (tmp_path / "predictions").mkdir()
    answers = '{"id": "a", "prediction": "insulin"}\n'
    (tmp_path / "predictions" / "eval-step-16.jsonl").write_text(answers)
    scores = {"eval_rougeL": 0.31, "eval_loss": 2.0}
    trainer.evaluations = {16: (scores, "predictions/eval-step-16.jsonl"), 24: ({"eval_rougeL": 0.2}, "p24")}
    assert trainer.evaluate_final() == scores
    # logged again (console, TensorBoard, log_history), the best step's answers copied to eval-final.jsonl
    assert {k: v for k, v in trainer.state.log_history[-1].items() if k in scores} == scores
    assert (tmp_path / "predictions" / "eval-final.jsonl").read_text() == answers
    assert "predictions/eval-final.jsonl" in read_inventory(tmp_path)["files"]
    assert trainer.last_predictions == "predictions/eval-final.jsonl"


def test_final_evaluation_without_generated_answers_copies_nothing(tokenizer, tmp_path):
    trainer = real_trainer(tokenizer, tmp_path, True, 16)
    trainer.evaluations = {16: ({"eval_loss": 2.0}, None)}
    assert trainer.evaluate_final() == {"eval_loss": 2.0}
    assert trainer.last_predictions is None and not (tmp_path / "predictions").exists()


def test_final_evaluation_runs_when_this_process_never_evaluated_the_kept_weights(tokenizer, tmp_path):
    # a resumed run: the best checkpoint's evaluation happened before the restart
    trainer = real_trainer(tokenizer, tmp_path, True, 8)
    trainer.evaluations = {24: ({"eval_rougeL": 0.2}, "p24")}
    metrics = trainer.evaluate_final()
    assert metrics["eval_loss"] > 0 and "eval_rougeL" not in metrics  # evaluated now, not the step-24 record
    assert trainer.evaluations[24][0] is metrics and trainer.predictions_name is None
    assert json.dumps(metrics)  # plain numbers, as metrics.json writes them
