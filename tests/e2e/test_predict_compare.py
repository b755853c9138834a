"""--do_predict and the comparison of two prediction files: files, statistics, plots, errors."""

import json
import random
import re

import pytest

import metrics_utils
from bioqa.errors import InputError
from helpers import read_jsonl, run_cli, run_flags


@pytest.fixture(scope="module")
def zero_shot(tiny_model_dir, qa_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero") / "out"
    result = run_cli(
        "--do_predict",
        *run_flags(tiny_model_dir, qa_file, out),
        "--generation_max_new_tokens",
        "12",
        "--bootstrap_samples",
        "200",
        "--generation_dtype",
        "fp32",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def read_rows(path):
    return read_jsonl(path)


def test_zero_shot_prediction_files(zero_shot, tiny_model_dir):
    rows = read_rows(zero_shot / "predictions.jsonl")
    assert len(rows) == 6 and {"id", "question", "reference", "prediction", "rougeL", "bleu", "meteor"} <= set(rows[0])
    summary = json.loads((zero_shot / "predict_metrics.json").read_text())
    assert summary["num_examples"] == 6 and summary["model"] == {
        "model_name_or_path": str(tiny_model_dir),
        "adapter": None,
    }
    for name, entry in summary["scores"].items():  # 6 questions: too few for a bootstrap (at least 10)
        assert entry["ci95"] is None, name
    assert summary["generation"]["max_new_tokens"] == 12 and summary["bootstrap"]["samples"] == 200
    assert summary["generation"]["dtype"] == "float32" and summary["generation"]["cache"] == "reserved"
    assert json.loads((zero_shot / "run_manifest.json").read_text())["device"]["generation_dtype"] == "float32"
    assert not (zero_shot / "adapter_model.safetensors").exists() and (zero_shot / "run_manifest.json").is_file()


def test_train_then_predict_uses_the_adapter_just_trained(trained):
    out, _ = trained
    summary = json.loads((out / "predict_metrics.json").read_text())
    assert summary["model"]["trained_in_this_run"] and summary["model"]["adapter"] == str(out)
    rows = read_rows(out / "predictions.jsonl")
    assert sum(r["rougeL"] for r in rows) / len(rows) == pytest.approx(summary["scores"]["rougeL"]["score"])


def test_adapter_and_merged_checkpoint_predict_the_same(trained, merged, tiny_model_dir, qa_file, tmp_path):
    out, _ = trained
    common = ["--do_predict", "--train_file", str(qa_file), "--generation_max_new_tokens", "12"]
    adapter = ["--model_name_or_path", str(tiny_model_dir), "--adapter_name_or_path", str(out)]
    fp32 = ["--generation_dtype", "fp32"]  # a merged bf16 weight rounds base + update once, not each apart
    runs = {
        "a": run_cli(*common, *adapter, *fp32, "--output_dir", str(tmp_path / "a")),
        "m": run_cli(*common, *fp32, "--model_name_or_path", str(merged[0]), "--output_dir", str(tmp_path / "m")),
        "auto": run_cli(*common, *adapter, "--output_dir", str(tmp_path / "auto")),  # the dtype of the run that trained
    }
    assert all(r.returncode == 0 for r in runs.values()), "".join(r.stderr[-2000:] for r in runs.values())
    predictions = {name: [r["prediction"] for r in read_rows(tmp_path / name / "predictions.jsonl")] for name in runs}
    assert predictions["a"] == predictions["m"]
    assert predictions["auto"] == [r["prediction"] for r in read_rows(out / "predictions.jsonl")]


def compare(*args):
    return run_cli("bioqa.comparison", *args, script="-m")


def test_compare_writes_report_table_and_plots(zero_shot, trained, tmp_path):
    report = tmp_path / "report"
    result = compare(
        "--baseline",
        str(zero_shot / "predictions.jsonl"),
        "--candidate",
        str(trained[0] / "predictions.jsonl"),
        "--output_dir",
        str(report),
        "--bootstrap_samples",
        "300",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| rougeL (0-1) |" in result.stdout and "report:" in result.stdout
    text = (report / "report.md").read_text()
    for fragment in (
        "## Scores",
        "95% CI of the difference",
        "## Where ROUGE-L moved most",
        "Largest gains",
        "## Answer lengths",
        "![per-example scores](scores.png)",
        "![training curves](training_curves.png)",
    ):
        assert fragment in text, fragment
    for png in ("scores.png", "training_curves.png"):  # the trainer_state.json next to the candidate was found
        data = (report / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, png
    numbers = json.loads((report / "comparison.json").read_text())
    assert numbers["num_examples"] == 6 and set(numbers["metrics"]) == {
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "bleu",
        "meteor",
    }
    for side, folder in (("baseline", zero_shot), ("candidate", trained[0])):  # each file's own scores
        rows = read_jsonl(folder / "predictions.jsonl")
        own = metrics_utils.compute_metrics([r["prediction"] for r in rows], [r["reference"] for r in rows])
        for metric, scores in numbers["metrics"].items():
            assert scores[side] == pytest.approx(own[metric]), (side, metric)
    row = numbers["metrics"]["rougeL"]
    assert row["difference"] == pytest.approx(row["candidate"] - row["baseline"])
    assert row["ci_low"] is row["ci_high"] is row["p_value"] is None  # 6 paired questions: no bootstrap
    assert "no interval or p-value: a bootstrap over 6 paired examples (fewer than 10)" in text
    assert "| n/a | n/a |" in text


def test_compare_refuses_files_with_different_ids(zero_shot, tmp_path):
    rows = read_rows(zero_shot / "predictions.jsonl")
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({**r, "id": "x-1" if i == 2 else r["id"]}) + "\n" for i, r in enumerate(rows)))
    result = compare(
        "--baseline",
        str(zero_shot / "predictions.jsonl"),
        "--candidate",
        str(other),
        "--output_dir",
        str(tmp_path / "report"),
    )
    missing = rows[2]["id"]
    assert result.returncode == 2 and f"id {missing!r} is in zero-shot but not in fine-tuned" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "report").exists()


def constructed_scores(n: int, better: bool, seed: int = 0):
    """Baseline answers share few words with the references; the candidate is the same or exactly right."""
    rng = random.Random(seed)
    words = "insulin glucose dose patients trial risk tumour cell gene receptor".split()
    references = [" ".join(rng.choice(words) for _ in range(10)) for _ in range(n)]
    baseline = [" ".join(rng.choice(words) for _ in range(10)) for _ in range(n)]
    candidate = references if better else baseline
    return metrics_utils.score_predictions(baseline, references), metrics_utils.score_predictions(candidate, references)


def test_paired_bootstrap_identical_systems():
    baseline, candidate = constructed_scores(80, better=False)
    for name, row in metrics_utils.paired_bootstrap(baseline, candidate, samples=500, seed=1).items():
        assert row["difference"] == row["ci_low"] == row["ci_high"] == 0.0, name
        assert row["p_value"] == 1.0, name


def test_paired_bootstrap_better_on_every_example():
    baseline, candidate = constructed_scores(80, better=True)
    for name in ("rougeL", "meteor"):
        assert all(c > b for b, c in zip(baseline.per_example[name], candidate.per_example[name]))
    result = metrics_utils.paired_bootstrap(baseline, candidate, samples=500, seed=1)
    for name, row in result.items():
        assert row["difference"] > 0 and row["ci_low"] > 0, name
        assert row["p_value"] == pytest.approx(1 / 501), name  # no resample comes near the observed gap
    assert result == metrics_utils.paired_bootstrap(baseline, candidate, samples=500, seed=1)  # seeded


def test_the_final_evaluation_is_its_own_marker_not_a_line_back_to_the_last_step(tmp_path):
    from bioqa.evaluate.report import plot_training_curves, split_history

    history = [
        {"loss": 2.0, "step": 4},
        {"eval_loss": 1.5, "eval_rougeL": 0.3, "step": 8},
        {"eval_loss": 1.4, "eval_rougeL": 0.2, "step": 16},
        {"train_runtime": 9.0, "step": 16},
        {"eval_loss": 1.5, "eval_rougeL": 0.3, "step": 16},
    ]  # the best adapter (step 8), logged at step 16
    train, during, after = split_history(history)
    assert [h["step"] for h in train] == [4] and [h["eval_rougeL"] for h in during] == [0.3, 0.2]
    assert [h["eval_rougeL"] for h in after] == [0.3]
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": history}))
    assert plot_training_curves(tmp_path / "curves.png", state)
    state.write_text("{ damaged")
    with pytest.raises(InputError, match="trainer_state.json \\(the trainer state\\) is damaged"):
        plot_training_curves(tmp_path / "curves.png", state)


def test_each_metric_is_a_line_of_its_evaluations_and_a_star_for_the_final_adapter():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bioqa.evaluate.report import plot_metric

    evals = [{"eval_rougeL": 0.3, "step": 8}, {"eval_rougeL": 0.2, "eval_bleu": 5.0, "step": 16}]
    final = [{"eval_rougeL": 0.3, "step": 16}]
    figure, axis = plt.subplots()
    plot_metric(axis, "eval_rougeL", evals, final)
    plot_metric(axis, "eval_bleu", evals, final)  # logged once, no final value: a point, no star
    plot_metric(axis, "eval_accuracy", evals, final)  # never logged: nothing drawn
    lines, stars = axis.get_lines(), [c.get_offsets().tolist() for c in axis.collections]
    assert [(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for line in lines] == [
        ("eval_rougeL", [8, 16], [0.3, 0.2]),
        ("eval_bleu", [16], [5.0]),
    ]
    assert stars == [[[16.0, 0.3]], []]
    assert axis.get_legend_handles_labels()[1] == ["eval_rougeL", "eval_rougeL, final adapter", "eval_bleu"]
    plt.close(figure)


def test_the_curves_show_each_metrics_headline_score_on_the_axis_of_its_scale():
    from bioqa.evaluate.report import curves_logged, top_of

    logged = {"eval_rouge1": 0.3, "eval_rougeL": 0.2, "eval_bleu": 5.0, "eval_token_f1": 40.0, "eval_accuracy": 0.5}
    history = [{"loss": 2.0, "step": 4}, {**logged, "eval_loss": 1.5, "step": 8}]
    shown = curves_logged(history)
    assert shown == ["eval_rougeL", "eval_bleu", "eval_token_f1", "eval_accuracy"]
    assert [top_of(name.removeprefix("eval_")) for name in shown] == [1.0, 100.0, 100.0, 1.0]


@pytest.mark.parametrize(
    "row, fragment",
    [
        ('{"id": "1", "reference": "a", "prediction": NaN}', "row 1: prediction is NaN, not a text"),
        ('{"id": "1", "reference": null, "prediction": "a"}', "row 1: reference is null, not a text"),
        ('{"id": ["1"], "reference": "a", "prediction": "a"}', 'row 1: id is ["1"], not a text or number'),
        ('{"id": true, "reference": "a", "prediction": "a"}', "row 1: id is true, not a text or number"),
    ],
)
def test_prediction_rows_that_are_not_texts_are_refused(tmp_path, row, fragment):
    from bioqa.evaluate.predictions import read_prediction_file

    (tmp_path / "p.jsonl").write_text(row + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(fragment)):
        read_prediction_file(tmp_path / "p.jsonl")


def test_prediction_files_keep_unusual_line_separators_inside_texts(tmp_path):
    from bioqa.evaluate.predictions import read_prediction_file

    rows = [
        {"id": 7, "question": "Q\u2028?", "reference": "a\u2029b", "prediction": "c\x85d\x0ce"},
        {"id": "8", "reference": "r", "prediction": "p"},
    ]
    (tmp_path / "p.jsonl").write_text(
        "\ufeff" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    read = read_prediction_file(tmp_path / "p.jsonl")
    assert [r["id"] for r in read] == ["7", "8"] and read[0]["prediction"] == "c\x85d\x0ce"


@pytest.mark.parametrize("n", [1, 2, 9])
def test_too_few_paired_examples_give_no_interval_or_p_value(n):
    baseline, candidate = constructed_scores(n, better=True)
    for name, row in metrics_utils.paired_bootstrap(baseline, candidate, samples=500, seed=1).items():
        assert row["difference"] > 0 and row["ci_low"] is row["ci_high"] is row["p_value"] is None, name
    assert metrics_utils.bootstrap_intervals(candidate, samples=100) == {}
    result = metrics_utils.compute_metrics(["a b"] * n, ["a b c"] * n, metrics=["rouge"], bootstrap_samples=50)
    assert result["rougeL_ci_low"] is result["rougeL_ci_high"] is None


def test_ten_paired_examples_are_enough_for_a_bootstrap():
    baseline, candidate = constructed_scores(10, better=True)
    row = metrics_utils.paired_bootstrap(baseline, candidate, samples=500, seed=1)["rougeL"]
    assert row["ci_low"] > 0 and row["p_value"] == pytest.approx(1 / 501)


def test_a_report_section_lists_only_what_its_title_says(tmp_path):
    from bioqa.evaluate.comparison import compare_rows as compare
    from bioqa.evaluate.report import write_report

    rows = [
        {
            "id": str(i),
            "question": f"q{i}",
            "reference": "insulin lowers glucose",
            "prediction": "insulin lowers glucose",
        }
        for i in range(12)
    ]
    worse = [{**row, "prediction": f"gene {i}"} for i, row in enumerate(rows)]  # worse on every question
    result = compare(rows, worse, 50, 0)
    write_report(tmp_path, result, rows, worse, ("zero-shot", "fine-tuned"), None, 5)
    text = (tmp_path / "report.md").read_text()
    gains = text.split("### Largest gains")[1].split("###")[0]
    assert "None: ROUGE-L rose on no example." in gains and "**0**" not in gains
    losses = text.split("### Largest losses")[1].split("##")[0]
    assert losses.count("- **") == 5
