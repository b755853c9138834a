"""The forgetting check after training (`--benchmark_tasks`): lm-evaluation-harness on the base and on the adapter
just trained, compared question by question, in the run's folder, manifest and model card."""

import json

import pytest

from bioqa.io.inventory import not_written
from bioqa.io.outputs import TRAINING_OUTPUT
from helpers import quick_training, read_jsonl, run_cli, run_flags
from tiny_models import write_jsonl, yes_no_rows

DATA = [
    *("--label_field", "decision", "--labels", "yes", "no"),
    *("--split_ratios", "0.7", "0.1", "0.2", "--generation_dtype", "fp32"),
]


@pytest.fixture(scope="module")
def checked(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("forgetting")
    data = write_jsonl(folder / "yes_no.jsonl", yes_no_rows(60))
    out = folder / "run"
    result = run_cli(
        *run_flags(tiny_model_dir, data, out),
        *DATA,
        *("--label_scoring", "loglik"),
        *quick_training(6),
        *("--do_train", "--do_predict", "--benchmark_tasks", "local", "--bootstrap_samples", "300"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, data


def accuracy(rows):
    return sum(row["correct"] for row in rows) / len(rows)


def test_both_models_are_benchmarked_and_compared_on_the_same_questions(checked):
    out, _ = checked
    sides = {side: read_jsonl(out / "benchmark" / side / "benchmark_predictions.jsonl") for side in ("base", "adapter")}
    test_ids = [row["id"] for row in read_jsonl(out / "predictions.jsonl")]
    assert sorted(row["id"] for row in sides["base"]) == sorted(test_ids) == sorted(r["id"] for r in sides["adapter"])
    # one definition of a log-likelihood choice: lm-eval on the adapter chose what --do_predict's loglik chose
    chosen = {row["id"]: row["loglik_label"] for row in read_jsonl(out / "predictions.jsonl")}
    assert {row["id"]: row["chosen"] for row in sides["adapter"]} == chosen
    local = json.loads((out / "benchmark" / "comparison" / "comparison.json").read_text())["benchmark"]["local"]
    assert local["baseline"] == pytest.approx(accuracy(sides["base"]))
    assert local["candidate"] == pytest.approx(accuracy(sides["adapter"]))
    assert local["questions"] == len(test_ids) and local["ci_low"] <= local["difference"] <= local["ci_high"]


def test_the_base_side_is_what_bioqa_benchmark_gives(checked, tiny_model_dir, tmp_path):
    out, data = checked
    alone = tmp_path / "alone"
    result = run_cli(
        "bioqa.cli.benchmark",
        "--model_name_or_path",
        str(tiny_model_dir),
        "--train_file",
        str(data),
        *DATA,
        *("--tasks", "local", "--output_dir", str(alone)),
        script="-m",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_jsonl(alone / "benchmark_predictions.jsonl") == read_jsonl(
        out / "benchmark" / "base" / "benchmark_predictions.jsonl"
    )


def test_the_card_and_manifest_hold_the_comparison_and_the_inventory_every_file(checked):
    out, _ = checked
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["benchmark"]["tasks"] == ["local"] and "finished_at" in manifest
    local = json.loads((out / "benchmark" / "comparison" / "comparison.json").read_text())["benchmark"]["local"]
    card = (out / "README.md").read_text()
    assert "### Standard benchmarks: the base against this adapter" in card
    assert f"| local | {local['questions']} | {local['baseline']:.3f} | {local['candidate']:.3f} |" in card
    assert "### Test" in card  # the test scores --do_predict put in the card stay
    assert not_written(out, TRAINING_OUTPUT) is None  # every benchmark file recorded: --overwrite_output_dir works
