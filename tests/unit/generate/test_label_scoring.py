"""Labels chosen by log-likelihood, label scoring of prediction rows, and options in prompts."""

import pytest
import torch

from bioqa.data import prompts
from bioqa.evaluate.predictions import generation_prompts, rescored, score_rows
from bioqa.generate.generation import Answers
from bioqa.generate.loglik import choose_labels, label_logliks
from helpers import prompt_args
from tiny_models import build_model

QUESTIONS = ["Does insulin lower blood glucose?", "Does aspirin inhibit cyclooxygenase?", "Does heparin work?"]


def _prompts(tokenizer, fmt, questions):
    return [prompts.prompt_ids(tokenizer, fmt, q, "") for q in questions]


def _made_to_prefer(tokenizer, fmt, label_ids, steps=40):
    """The tiny model, trained a few steps to answer every question with `label_ids`."""
    torch.manual_seed(0)
    model = build_model(tokenizer)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        for ids in _prompts(tokenizer, fmt, QUESTIONS[:2]):
            batch = torch.tensor([ids + label_ids])
            labels = torch.tensor([[-100] * len(ids) + label_ids])
            model(input_ids=batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_loglik_picks_the_label_a_tiny_model_was_made_to_prefer(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    continuations = prompts.label_continuations(tokenizer, fmt, ("yes", "no", "maybe"), "label")
    for preferred in ("maybe", "no"):
        model = _made_to_prefer(tokenizer, fmt, continuations[preferred])
        unseen = _prompts(tokenizer, fmt, QUESTIONS[2:] + ["Is IL-6 a cytokine?"])
        assert choose_labels(model, tokenizer, unseen, continuations, batch_size=2) == [preferred, preferred]


def test_batched_logliks_equal_one_unpadded_prompt_at_a_time(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    model = build_model(tokenizer).eval()
    continuations = list(
        prompts.label_continuations(tokenizer, fmt, ("yes", "no", "maybe"), "label_then_answer").values()
    )
    ids = _prompts(tokenizer, fmt, ["Q?", *QUESTIONS])  # lengths differ: rows are left-padded in a batch
    batched = label_logliks(model, tokenizer, ids, continuations, batch_size=5)
    for i, prompt in enumerate(ids):
        for k, continuation in enumerate(continuations):
            with torch.no_grad():
                log_probs = torch.log_softmax(model(input_ids=torch.tensor([prompt + continuation])).logits[0], -1)
            expected = sum(float(log_probs[len(prompt) - 1 + j, t]) for j, t in enumerate(continuation))
            assert batched[i][k] == pytest.approx(expected, abs=1e-4)


def test_label_continuations_start_the_answer_as_training_writes_it(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    for target, written in (("label", "yes"), ("label_then_answer", "Yes."), ("answer", "yes")):
        ids = prompts.label_continuations(tokenizer, fmt, ("yes", "no"), target)["yes"]
        assert tokenizer.decode(ids) == written
    trained = prompts.answer_ids(tokenizer, fmt, "Yes. It lowers glucose.")  # the label_then_answer target
    start = prompts.label_continuations(tokenizer, fmt, ("yes", "no"), "label_then_answer")["yes"]
    assert trained[: len(start)] == start


def test_options_are_in_the_prompt_identically_for_training_and_generation(tokenizer, tmp_path):
    from bioqa.data.splits import FieldMap, to_examples

    record = {"question": "Which hormone lowers glucose?", "options": ["Glucagon", "Insulin"], "cop": 1}
    fields = FieldMap(label="cop", options=("options",), target="label")
    [example], _ = to_examples([record], fields, "train", "mc", ("A", "B"))
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    features, _ = prompts.encode_for_training(tokenizer, fmt, example, 512)
    _, [generation] = generation_prompts(tokenizer, fmt, [example], 512, 16)
    assert features["input_ids"][: len(generation)] == generation
    assert "A. Glucagon\nB. Insulin" in tokenizer.decode(generation)
    assert tokenizer.decode(features["input_ids"][len(generation) :]) == "B<|im_end|>"


EXAMPLES = [
    {"id": "1", "question": "q1", "context": "", "answer": "Yes. It works.", "label": "yes"},
    {"id": "2", "question": "q2", "context": "", "answer": "No. It fails.", "label": "no"},
    {"id": "3", "question": "q3", "context": "", "answer": "No. Not at all.", "label": "no"},
]


def test_rows_gain_gold_and_predicted_labels_and_the_scores_add_up():
    answers = Answers(["Yes. It works.", "I cannot tell.", "No."], ["yes", "yes", "no"])
    scored = score_rows(EXAMPLES, answers, ["rouge"], ("yes", "no"))
    assert [(r["label"], r["predicted_label"], r["loglik_label"]) for r in scored.rows] == [
        ("yes", "yes", "yes"),
        ("no", None, "yes"),
        ("no", "no", "no"),
    ]
    metrics = scored.metrics()
    assert metrics["accuracy"] == pytest.approx(2 / 3) and metrics["unparsed"] == pytest.approx(1 / 3)
    assert metrics["loglik_accuracy"] == pytest.approx(2 / 3) and metrics["rougeL"] == scored.text.corpus()["rougeL"]
    summary = scored.summary(200, seed=0)
    assert summary["scores"]["accuracy"]["ci95"] is None  # three questions: too few for a bootstrap
    assert summary["labels"]["generated"]["confusion"]["no"]["unparsed"] == 1
    again = rescored(scored.rows, ["yes", "no"]).summary(200, seed=0)  # what the model card reads back
    assert again["scores"] == summary["scores"]


def test_loglik_only_rows_hold_the_chosen_label_as_the_prediction():
    scored = score_rows(EXAMPLES, Answers(None, ["yes", "no", "yes"]), ["rouge"], ("yes", "no"))
    assert scored.text is None and scored.generated is None
    assert [r["prediction"] for r in scored.rows] == ["yes", "no", "yes"]
    assert set(scored.metrics()) == {"loglik_accuracy", "loglik_macro_f1"}
