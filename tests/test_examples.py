"""The scripts a user runs, run as a user would: a subprocess, its exit code and its output."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_demo_prints_the_results_table():
    out = subprocess.run([sys.executable, "examples/metrics_demo.py"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "| rougeL |" in out.stdout and "| meteor |" in out.stdout
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in out.stdout
    assert out.stdout.count("| What") + out.stdout.count("| How") + out.stdout.count("| Which") == 5
