"""A dialogue data set end to end as a user runs it: zero-shot and fine-tuned predictions of the last assistant turn
of each conversation, the model card, and the comparison of the two."""

import json

import pytest

from helpers import quick_training, read_jsonl, run_cli, run_flags

TURNS = [
    ("What is HbA1c?", "A measure of average blood glucose over about three months."),
    ("What value suggests diabetes?", "6.5 percent or higher."),
    ("Should it be repeated?", "Yes, a second test confirms the diagnosis."),
]
FLAGS = [*quick_training(6), "--generation_max_new_tokens", "8", "--split_ratios", "0.7", "0.0", "0.3"]


def sharegpt_dialogues(path, count: int):
    """ShareGPT records of one to three exchanges, each conversation's words marked with its number."""
    rows = []
    for i in range(count):
        turns = [
            ("human" if k % 2 == 0 else "gpt", text) for q, a in TURNS[: 1 + i % 3] for k, text in enumerate((q, a))
        ]
        rows.append({"id": f"d{i}", "conversations": [{"from": who, "value": f"{text} ({i})"} for who, text in turns]})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def test_a_dialogue_set_trains_predicts_the_last_turn_and_compares(tiny_model_dir, tmp_path):
    rows = {row["id"]: row for row in sharegpt_dialogues(tmp_path / "dialogues.jsonl", 30)}
    zero, tuned = tmp_path / "zero", tmp_path / "tuned"
    data = tmp_path / "dialogues.jsonl"
    zero_shot = run_cli(*run_flags(tiny_model_dir, data, zero), *FLAGS, "--do_predict")
    assert zero_shot.returncode == 0, zero_shot.stderr[-3000:]
    trained = run_cli(*run_flags(tiny_model_dir, data, tuned), *FLAGS, "--do_train", "--do_predict")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "records: sharegpt (detected: the records have a 'conversations' list)" in trained.stderr
    predicted = read_jsonl(tuned / "predictions.jsonl")
    assert [r["id"] for r in predicted] == [r["id"] for r in read_jsonl(zero / "predictions.jsonl")]
    for row in predicted:  # each conversation's last user turn, scored against its last assistant turn
        turns = rows[row["id"]]["conversations"]
        assert (row["question"], row["reference"]) == (turns[-2]["value"], turns[-1]["value"])
    assert "record_format: auto" in (tuned / "run_config.yaml").read_text()
    assert "assistant_loss" in (tuned / "README.md").read_text()  # the card's recipe table
    report = tmp_path / "report"
    compared = run_cli(
        "bioqa.comparison",
        "--baseline",
        str(zero / "predictions.jsonl"),
        "--candidate",
        str(tuned / "predictions.jsonl"),
        "--output_dir",
        str(report),
        script="-m",
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    numbers = json.loads((report / "comparison.json").read_text())
    assert numbers["num_examples"] == len(predicted) == 9
    rouge = numbers["metrics"]["rougeL"]
    assert rouge["candidate"] == pytest.approx(sum(r["rougeL"] for r in predicted) / len(predicted))
