"""The installable package: console commands, `import metrics_utils` from anywhere, and what a wheel holds."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT

COMMANDS = {
    "bioqa-train": "--lora_r",
    "bioqa-merge": "--adapter_dir",
    "bioqa-compare": "--baseline",
    "bioqa-score": "--predictions",
    "bioqa-benchmark": "--tasks",
}


@pytest.mark.parametrize("command, flag", sorted(COMMANDS.items()))
def test_console_commands_are_installed_and_answer_help(command, flag, tmp_path):
    script = Path(sys.executable).parent / command  # make setup installs the project into this environment
    result = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and flag in result.stdout, result.stderr[-2000:]


def test_metrics_utils_and_bioqa_import_from_any_folder(tmp_path):
    code = (
        "import metrics_utils, bioqa.cli.train; "
        "print(metrics_utils.compute_metrics(['a b'], ['a b'], metrics=('rouge',))['rougeL'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )  # no PYTHONPATH: only what is installed
    assert result.returncode == 0 and result.stdout.strip() == "1.0", result.stderr[-2000:]


@pytest.mark.slow
def test_the_wheel_holds_the_package_the_module_and_four_commands(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("bioqa_lora-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    assert {
        "metrics_utils.py",
        "bioqa/cli/train.py",
        "bioqa/cli/merge.py",
        "bioqa/io/outputs.py",
        "bioqa/benchmark/run.py",
    } <= names
    assert not any(n.startswith(("tests/", "bench/", "models/")) for n in names)
    for command in COMMANDS:
        assert f"{command} = " in entry_points
    pins = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    for pin in filter(None, pins):  # the exact pins of requirements.txt, as the package's dependencies
        assert f"Requires-Dist: {pin}" in metadata, pin
