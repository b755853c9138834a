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
