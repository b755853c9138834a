"""The scripts a user runs, run as a user would: a subprocess, its exit code and its output."""

import subprocess
import sys

import pytest

from helpers import ROOT


def test_metrics_demo_prints_the_results_table():
    out = subprocess.run([sys.executable, "examples/metrics_demo.py"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "| rougeL |" in out.stdout and "| meteor |" in out.stdout
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in out.stdout
    assert out.stdout.count("| What") + out.stdout.count("| How") + out.stdout.count("| Which") == 5


@pytest.mark.parametrize(
    "command, flags",
    [
        (["load_models.py"], ["--model_name_or_path", "--adapter_name_or_path", "--bootstrap_samples", "--do_predict"]),
        (
            ["merge_base_and_adapt_ft_models.py"],
            ["--adapter_dir", "--base_model", "--low_memory", "--no_verify", "--config"],
        ),
        (
            ["-m", "bioqa.comparison"],
            ["--baseline", "--candidate", "--trainer_state", "--bootstrap_samples", "--config"],
        ),
    ],
)
def test_every_entry_point_has_help(command, flags):
    out = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert all(flag in out.stdout for flag in flags)


def test_notebook_runs_the_pipeline_through_the_api(tiny_model_dir, qa_file, tmp_path):
    """examples/notebook.py cell by cell is the script run whole: on a tiny model, every step's files and output."""
    import os

    notebook = (ROOT / "examples" / "notebook.py").read_text()
    assert notebook.count("# %%") >= 10 and "import bioqa" in notebook
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"model_name_or_path: {tiny_model_dir}\ntrain_file: {qa_file}\nmax_steps: 4\neval_strategy: steps\n"
        "eval_steps: 2\nsave_strategy: steps\nsave_steps: 2\nload_best_model_at_end: true\n"
        "metric_for_best_model: eval_rougeL\ngeneration_max_new_tokens: 8\nreport_to: none\n"
        "split_ratios: [0.7, 0.1, 0.2]\n"  # 12 test questions: enough for intervals
    )
    env = {**os.environ, "BIOQA_NOTEBOOK_CONFIG": str(config), "BIOQA_NOTEBOOK_OUTPUT": str(tmp_path / "nb")}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "examples/notebook.py"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "nb"
    for path in ("zero-shot/predictions.jsonl", "fine-tuned/adapter_model.safetensors", "fine-tuned/predictions.jsonl"):
        assert (out / path).is_file(), path
    assert (out / "report" / "report.md").is_file() and (out / "merged" / "config.json").is_file()
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| ROUGE-L |" in done.stdout and "best checkpoint: " in done.stdout and ", p = " in done.stdout
