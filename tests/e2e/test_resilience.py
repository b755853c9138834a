"""Never lose a run: kill and resume, stop on a signal, stop on NaN, and only complete checkpoints resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, contents, run_flags

# 40 steps of a tiny model: well over a second after checkpoint-8, so the kill lands mid-run on any machine
STEPS = (
    "--max_steps 40 --save_strategy steps --save_steps 4 --eval_strategy no --per_device_train_batch_size 4 "
    "--learning_rate 5e-3 --report_to none --seed 3 --logging_steps 1"
).split()


def base_args(model: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "load_models.py", *run_flags(model, data, out)]


def start(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for the training run")
        time.sleep(0.05)


def assert_same_adapter(run: Path, reference: Path) -> None:
    """A resumed run ends with the adapter of the run never stopped, tensor for tensor."""
    import torch

    expected, got = adapter(reference), adapter(run)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4)


def adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_uninterrupted_adapter(tiny_model_dir, qa_file, tmp_path):

    reference = tmp_path / "reference"
    assert (
        subprocess.run(base_args(tiny_model_dir, qa_file, reference) + STEPS, cwd=ROOT, capture_output=True).returncode
        == 0
    )
    killed = tmp_path / "killed"
    process = start(base_args(tiny_model_dir, qa_file, killed) + STEPS, tmp_path / "log")
    wait_for(lambda: (killed / "checkpoint-8" / "trainer_state.json").is_file())
    # killed in the steps after the checkpoint: once a step after it has logged its loss (--logging_steps 1)
    seen = len((tmp_path / "log").read_text())
    wait_for(lambda: "'loss'" in (tmp_path / "log").read_text()[seen:])
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (killed / "adapter_model.safetensors").exists()  # no final artifact from a killed run
    started = json.loads(
        (killed / "run_manifest.json").read_text()
    )  # written when training started: what a resume checks
    assert started["status"] == "training" and started["data_sources"]["train"]["sha256"]
    stale = subprocess.run(
        base_args(tiny_model_dir, qa_file, killed) + STEPS + ["--resume_from_checkpoint", "latest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lock = tmp_path / ".killed.lock"
    assert stale.returncode == 2 and f"has a stale lock {lock} left by process {process.pid}" in stale.stderr
    assert f"rm {lock}" in stale.stderr
    lock.unlink()
    resumed = subprocess.run(
        base_args(tiny_model_dir, qa_file, killed) + STEPS + ["--resume_from_checkpoint", "latest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_adapter(killed, reference)  # same data order, scheduler and RNG after the resume


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_saves_a_checkpoint_and_stops_cleanly(signal_name, tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "out"
    steps = [a if a != "40" else "400" for a in STEPS] + ["--save_steps", "1000"]
    log = tmp_path / "log"
    process = start(base_args(tiny_model_dir, qa_file, out) + steps, log)
    wait_for(lambda: "'loss'" in log.read_text())
    process.send_signal(getattr(signal, signal_name))
    assert process.wait(timeout=120) == 130
    text = log.read_text()
    assert f"error: stopped by {signal_name} at step" in text and "--resume_from_checkpoint latest" in text
    assert "Traceback" not in text
    step = int(text.split("at step ")[1].split(";")[0])
    assert (out / f"checkpoint-{step}" / "trainer_state.json").is_file() and step < 400
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["status"] == f"stopped by {signal_name}" and not (out / "metrics.json").exists()
    assert not (tmp_path / ".out.lock").exists()


@pytest.mark.slow
def test_resuming_from_the_checkpoint_sigterm_saved_reaches_the_uninterrupted_adapter(
    tiny_model_dir, qa_file, tmp_path
):
    """No scheduled checkpoint at all: the one SIGTERM saved mid-run is the only way on, and it leads to the adapter
    of a run never stopped."""

    steps = [*STEPS, "--save_steps", "1000"]
    reference = tmp_path / "reference"
    assert (
        subprocess.run(base_args(tiny_model_dir, qa_file, reference) + steps, cwd=ROOT, capture_output=True).returncode
        == 0
    )
    out, log = tmp_path / "out", tmp_path / "log"
    process = start(base_args(tiny_model_dir, qa_file, out) + steps, log)
    wait_for(lambda: log.read_text().count("'loss'") >= 3)  # a few steps in
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 130
    saved = sorted(out.glob("checkpoint-*"))
    assert len(saved) == 1 and not (out / "adapter_model.safetensors").exists()
    resumed = subprocess.run(
        base_args(tiny_model_dir, qa_file, out) + steps + ["--resume_from_checkpoint", "latest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "run_manifest.json").read_text())["resumed_from"].endswith(saved[0].name)
    assert_same_adapter(out, reference)


def test_non_finite_loss_stops_and_names_the_last_good_checkpoint(tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "out"
    args = [
        "--max_steps",
        "30",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--eval_strategy",
        "no",
        "--learning_rate",
        "1e15",
        "--max_grad_norm",
        "0",
        "--report_to",
        "none",
        "--precision",
        "fp32",
    ]
    result = subprocess.run(base_args(tiny_model_dir, qa_file, out) + args, cwd=ROOT, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-3000:]
    assert "became NaN or infinite at step" in errors[0] and "the last good checkpoint is" in errors[0]
    assert "lower --learning_rate" in errors[0] and "Traceback" not in result.stderr


def test_latest_resumes_only_complete_checkpoints(tmp_path):
    from bioqa.train.trainer import complete_checkpoints

    for step, complete in ((4, True), (8, True), (12, False)):  # 12: a save that crashed half-way
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"x")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-8"]


FINISHED = (
    "--max_steps 8 --save_strategy steps --save_steps 4 --eval_strategy no --per_device_train_batch_size 4 "
    "--learning_rate 5e-3 --lr_scheduler_type constant --report_to none --seed 3"
).split()


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, qa_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "out"
    result = subprocess.run(
        base_args(tiny_model_dir, qa_file, out) + FINISHED, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(run, out)
    return out


@pytest.mark.slow
def test_resuming_a_finished_run_trains_nothing(finished_run, tiny_model_dir, qa_file, tmp_path):
    out = copy_run(finished_run, tmp_path)
    before = {
        name: (out / name).read_bytes() for name in ("adapter_model.safetensors", "metrics.json", "run_config.yaml")
    }
    command = base_args(tiny_model_dir, qa_file, out) + FINISHED + ["--resume_from_checkpoint", "latest"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "is complete" in result.stderr, result.stderr[-3000:]
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    # stopped during the final evaluation: the checkpoint at the last step is there, the final files are not
    for name in ("adapter_model.safetensors", "metrics.json", "run_manifest.json"):
        (out / name).unlink()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert adapter(out).keys() == adapter(out / "checkpoint-8").keys()
    for name, tensor in adapter(out / "checkpoint-8").items():  # no step 9 of 8
        assert adapter(out)[name].equal(tensor), name
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 8


@pytest.mark.slow
def test_resuming_with_other_training_settings_is_refused(finished_run, tiny_model_dir, qa_file, tmp_path):
    out = copy_run(finished_run, tmp_path)
    config = (out / "run_config.yaml").read_bytes()
    (out / "checkpoint-8").rename(out / "checkpoint-8-moved")  # so that a resume would train on from step 4
    other = [a if a != "5e-3" else "1e-3" for a in FINISHED] + ["--per_device_train_batch_size", "2", "--lora_r", "4"]
    result = subprocess.run(
        base_args(tiny_model_dir, qa_file, out) + other + ["--resume_from_checkpoint", "latest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    for fragment in ("--lora_r 16 -> 4", "--learning_rate 0.005 -> 0.001", "--per_device_train_batch_size 4 -> 2"):
        assert fragment in errors[0], fragment
    # a resume that ran would have trained on from step 4 and saved step 8 again
    assert (out / "run_config.yaml").read_bytes() == config and not (out / "checkpoint-8").exists()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8-moved"]


@pytest.mark.slow
def test_a_damaged_optimizer_state_names_the_checkpoint_and_the_previous_one(
    finished_run, tiny_model_dir, qa_file, tmp_path
):
    out = copy_run(finished_run, tmp_path)
    for name in ("adapter_model.safetensors", "metrics.json", "run_manifest.json"):
        (out / name).unlink()
    optimizer = out / "checkpoint-8" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    result = subprocess.run(
        base_args(tiny_model_dir, qa_file, out) + FINISHED + ["--resume_from_checkpoint", "latest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{optimizer} is damaged" in errors[0] and f"--resume_from_checkpoint {out / 'checkpoint-4'}" in errors[0]


@pytest.mark.slow
def test_a_second_run_into_a_folder_in_use_is_refused_and_the_first_run_is_untouched(tiny_model_dir, qa_file, tmp_path):
    out, lock = tmp_path / "out", tmp_path / ".out.lock"
    first = start(base_args(tiny_model_dir, qa_file, out) + FINISHED, tmp_path / "first.log")
    wait_for(lambda: (out / "run_manifest.json").is_file())  # the first run has started writing
    first.send_signal(signal.SIGSTOP)  # held with the lock, however fast this machine: the two runs surely meet
    try:
        assert f'"pid": {first.pid}' in lock.read_text()
        before = contents(out)
        # the second run asks to overwrite: nothing of the first run may be deleted while it writes
        second = subprocess.run(
            base_args(tiny_model_dir, qa_file, out) + FINISHED + ["--overwrite_output_dir"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert second.returncode == 2 and len(errors) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
        assert f"is in use by process {first.pid} on" in errors[0] and "load_models.py" in errors[0]
        assert contents(out) == before
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 8
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert not lock.exists()  # released by the run that finished


@pytest.mark.slow
def test_sigterm_during_prediction_exits_130_with_one_line_and_writes_nothing(tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "load_models.py",
        "--model_name_or_path",
        str(tiny_model_dir),
        "--do_predict",
        "--test_file",
        str(qa_file),
        "--output_dir",
        str(out),
        "--generation_batch_size",
        "1",
        "--generation_max_new_tokens",
        "200",
        "--generation_min_new_tokens",
        "200",
    ]
    log = tmp_path / "log"
    process = start(command, log)
    wait_for(lambda: "generating" in log.read_text())
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 130
    errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
    assert errors == [
        "error: stopped by SIGTERM during prediction; nothing partial was kept; run the same command again"
    ]
    assert not (out / "predictions.jsonl").exists() and not (tmp_path / ".out.lock").exists()


def test_a_signal_during_a_stage_becomes_interrupted_and_the_handlers_come_back():
    from bioqa.cli.runner import exit_code
    from bioqa.errors import Interrupted, interrupt_on_signal, options_spelled_as_flags

    before = signal.getsignal(signal.SIGTERM)
    with (
        options_spelled_as_flags(),
        pytest.raises(
            Interrupted,
            match="stopped by SIGTERM during the final evaluation and saving; continue with the "
            "same command plus --resume_from_checkpoint latest",
        ) as info,
    ):
        with interrupt_on_signal("the final evaluation and saving", resumable=True):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert exit_code(info.value) == 130 and signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow
def test_resuming_on_changed_training_data_is_refused(tiny_model_dir, qa_file, tmp_path):
    import shutil

    data, out = tmp_path / "qa.jsonl", tmp_path / "out"
    shutil.copy(qa_file, data)
    assert (
        subprocess.run(base_args(tiny_model_dir, data, out) + FINISHED, cwd=ROOT, capture_output=True).returncode == 0
    )
    shutil.rmtree(out / "checkpoint-8")
    (out / "adapter_model.safetensors").unlink()  # as if killed after step 4
    data.write_text(data.read_text() + json.dumps({"question": "New?", "answer": "New."}) + "\n")
    result = subprocess.run(
        base_args(tiny_model_dir, data, out) + FINISHED + ["--resume_from_checkpoint", "latest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and f"--train_file {data} changed since the run" in result.stderr, result.stderr[
        -2000:
    ]
