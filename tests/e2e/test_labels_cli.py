"""Yes/no questions end to end: a run on the tiny model that scores labels at every evaluation, selects the
best checkpoint by eval_accuracy, and predicts with labels, intervals and both ways of scoring them."""

import json

import pytest

from helpers import TRAIN, read_jsonl, run_cli, run_flags
from tiny_models import write_jsonl, yes_no_rows

LABELS = ["--label_field", "decision", "--labels", "yes", "no", "--target", "label_then_answer"]


@pytest.fixture(scope="module")
def labelled_run(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    data = write_jsonl(folder / "yes_no.jsonl", yes_no_rows(60))
    out = folder / "out"
    result = run_cli(
        *run_flags(tiny_model_dir, data, out),
        *LABELS,
        "--label_scoring",
        "both",
        "--load_best_model_at_end",
        "--metric_for_best_model",
        "eval_accuracy",
        "--do_train",
        "--do_predict",
        *("--split_ratios", "0.7", "0.1", "0.2"),  # 12 test questions: enough for a bootstrap (at least 10)
        *TRAIN,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def _rows(path):
    return read_jsonl(path)


def test_label_metrics_are_logged_at_every_evaluation(labelled_run):
    out, result = labelled_run
    assert "labels: yes, no (from --labels)" in result.stderr and "train labels: yes " in result.stderr
    counts = json.loads((out / "run_manifest.json").read_text())["label_counts"]
    assert sum(counts["train"].values()) == 42 and sum(counts["test"].values()) == 12
    state = json.loads((out / "checkpoint-24" / "trainer_state.json").read_text())
    evals = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert [e["step"] for e in evals] == [8, 16, 24]
    for entry in evals:
        for name in ("eval_accuracy", "eval_macro_f1", "eval_unparsed", "eval_loglik_accuracy", "eval_loglik_macro_f1"):
            assert 0.0 <= entry[name] <= 1.0, name
        assert "eval_rougeL" in entry
    rows = _rows(out / "predictions" / "eval-step-24.jsonl")
    assert {"label", "predicted_label", "loglik_label", "rougeL"} <= set(rows[0])
    correct = sum(r["predicted_label"] == r["label"] for r in rows)
    assert correct / len(rows) == pytest.approx(evals[-1]["eval_accuracy"])
    assert sum(r["predicted_label"] is None for r in rows) / len(rows) == pytest.approx(evals[-1]["eval_unparsed"])


def test_the_best_checkpoint_is_selected_by_eval_accuracy(labelled_run):
    out, _ = labelled_run
    state = json.loads((out / "checkpoint-24" / "trainer_state.json").read_text())
    evals = [entry for entry in state["log_history"] if "eval_loss" in entry]
    best = max(evals, key=lambda e: e["eval_accuracy"])  # the first of equal maxima, as the Trainer keeps it
    assert state["best_metric"] == best["eval_accuracy"]
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")
    assert json.loads((out / "metrics.json").read_text())["eval_accuracy"] == pytest.approx(best["eval_accuracy"])


def test_predict_writes_labels_and_accuracy_with_intervals(labelled_run):
    out, _ = labelled_run
    rows = _rows(out / "predictions.jsonl")
    assert all(r["label"] in ("yes", "no") and r["loglik_label"] in ("yes", "no") for r in rows)
    assert all(r["predicted_label"] in ("yes", "no", None) for r in rows)
    # --target label_then_answer: the model writes "Yes. <answer>", the reference stays the data's answer
    assert not any(r["reference"].startswith(("Yes. ", "No. ")) for r in rows)
    summary = json.loads((out / "predict_metrics.json").read_text())
    for name in ("accuracy", "macro_f1", "loglik_accuracy", "loglik_macro_f1", "rougeL"):
        entry = summary["scores"][name]
        assert entry["ci95"][0] <= entry["score"] <= entry["ci95"][1], name
    accuracy = sum(r["predicted_label"] == r["label"] for r in rows) / len(rows)
    assert summary["scores"]["accuracy"]["score"] == pytest.approx(accuracy)
    confusion = summary["labels"]["generated"]["confusion"]
    assert sum(sum(row.values()) for row in confusion.values()) == len(rows)
    assert summary["label_scoring"] == "both"
    card = (out / "README.md").read_text()
    assert "| Accuracy |" in card and "| Accuracy (log-likelihood) |" in card


def test_loglik_alone_generates_nothing(labelled_run, tiny_model_dir, tmp_path):
    out, _ = labelled_run
    predicted = tmp_path / "loglik"
    result = run_cli(
        "--model_name_or_path",
        str(tiny_model_dir),
        "--adapter_name_or_path",
        str(out),
        "--test_file",
        str(out.parent / "yes_no.jsonl"),
        "--output_dir",
        str(predicted),
        *LABELS,
        "--label_scoring",
        "loglik",
        "--do_predict",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "generating" not in result.stderr
    summary = json.loads((predicted / "predict_metrics.json").read_text())
    assert set(summary["scores"]) == {"loglik_accuracy", "loglik_macro_f1"}
    rows = _rows(predicted / "predictions.jsonl")
    assert len(rows) == 60 and all(r["prediction"] == r["loglik_label"] for r in rows)


def test_comparison_tests_accuracy_and_lists_flipped_questions(labelled_run, tiny_model_dir, tmp_path):
    import metrics_utils

    out, _ = labelled_run
    zero = tmp_path / "zero-shot"
    flags = ["--test_file", str(out.parent / "yes_no.jsonl"), *LABELS, "--label_scoring", "both"]
    result = run_cli("--model_name_or_path", str(tiny_model_dir), *flags, "--output_dir", str(zero), "--do_predict")
    assert result.returncode == 0, result.stderr[-3000:]
    # the trained run predicted on its own test split; the zero-shot run on all 60: compare on the same 12
    test_ids = {r["id"] for r in _rows(out / "predictions.jsonl")}
    baseline = [r for r in _rows(zero / "predictions.jsonl") if r["id"] in test_ids]
    write_jsonl(zero / "predictions.jsonl", baseline)
    report = tmp_path / "report"
    result = run_cli(
        "bioqa.comparison",
        *("--baseline", str(zero / "predictions.jsonl"), "--candidate", str(out / "predictions.jsonl")),
        *("--output_dir", str(report), "--bootstrap_samples", "300"),
        script="-m",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    comparison = json.loads((report / "comparison.json").read_text())
    assert comparison["label_set"] == ["yes", "no"]  # from the candidate run's manifest, in its order
    for name in ("accuracy", "macro_f1", "loglik_accuracy", "loglik_macro_f1", "rougeL"):
        row = comparison["metrics"][name]
        assert row["ci_low"] <= row["difference"] <= row["ci_high"], name
    candidate = {r["id"]: r for r in _rows(out / "predictions.jsonl")}
    right_before = [r["predicted_label"] == r["label"] for r in baseline]
    right_after = [candidate[r["id"]]["predicted_label"] == r["label"] for r in baseline]
    generated = comparison["labels"]["generated"]
    assert generated["mcnemar"] == metrics_utils.mcnemar_exact(right_before, right_after)
    assert generated["wrong_to_right"] == [
        r["id"] for r, a, b in zip(baseline, right_before, right_after) if b and not a
    ]
    assert comparison["metrics"]["accuracy"]["difference"] == pytest.approx(
        (sum(right_after) - sum(right_before)) / len(baseline)
    )
    text = (report / "report.md").read_text()
    assert "## Labels read from the generated answers" in text and "Confusion matrix of fine-tuned" in text
    assert "## Labels chosen by log-likelihood" in text and (report / "confusion.png").stat().st_size > 1000
