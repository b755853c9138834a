"""bioqa-doctor as a user runs it first: on this CPU it reports the choice, trains, evaluates and merges a tiny model
and says ready; on a machine whose NVIDIA GPU torch cannot use it says why and trains nothing."""

import json
import os

import pytest
import torch

from helpers import fake_nvidia_smi, run_cli


@pytest.mark.slow
def test_the_doctor_on_this_cpu_checks_every_stage_and_says_ready(tmp_path):
    keep = tmp_path / "smoke"
    result = run_cli("bioqa.cli.doctor", "--keep_dir", str(keep), script="-m")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    report = dict(line.strip().split(None, 1) for line in result.stdout.splitlines()[1:] if "  " in line.strip())
    assert report["choice"].startswith("device cpu,") and report["speed-ups"].startswith("the toolkit's CPU speed-ups")
    manifest = json.loads((keep / "run" / "run_manifest.json").read_text())
    state = json.loads((keep / "run" / "trainer_state.json").read_text())
    merge = json.loads((keep / "merged" / "merge_report.json").read_text())
    trained = next(line for line in result.stdout.splitlines() if "smoke: train + evaluate" in line)
    answers = manifest["final_metrics"]["eval_num_examples"]
    assert "ok in" in trained and f"{state['global_step']} LoRA steps, {answers:.0f} generated answers" in trained
    assert answers == 16 and manifest["peak_memory_mb"]["host"] > 0 and manifest["peak_memory_mb"]["device"] is None
    merged = next(line for line in result.stdout.splitlines() if "smoke: merge + verify" in line)
    assert merge["verification"]["passed"] is True and f"{merge['verification']['method']}: passed" in merged
    assert result.stdout.splitlines()[-1].split(None, 1)[1].startswith("ready: cpu (")


@pytest.mark.skipif(bool(torch.version.cuda), reason="fakes a GPU that a CPU-only torch cannot use")
def test_a_gpu_torch_cannot_use_is_named_and_nothing_is_trained(tmp_path):
    path = f"{fake_nvidia_smi(tmp_path)}:{os.environ['PATH']}"
    environment = {"PATH": path, "CUDA_VISIBLE_DEVICES": "0"}
    result = run_cli("bioqa.cli.doctor", "--keep_dir", str(tmp_path / "smoke"), script="-m", env=environment)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "nvidia driver        535.104.05" in result.stdout
    assert "gpu 0 (driver)       Tesla V100-SXM2-16GB, compute capability 7.0, 16.0 GiB" in result.stdout
    verdict = result.stdout.splitlines()[-1]
    assert "not ready: this machine has an NVIDIA GPU (Tesla V100-SXM2-16GB, driver 535.104.05)" in verdict
    assert "CPU-only build" in verdict and "smoke:" not in result.stdout and not (tmp_path / "smoke").exists()


def test_an_existing_keep_dir_is_refused(tmp_path):
    result = run_cli("bioqa.cli.doctor", "--no_smoke", "--keep_dir", str(tmp_path), script="-m")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        f"error: --keep_dir {tmp_path} exists; give a new folder for the smoke run's files"
    )
