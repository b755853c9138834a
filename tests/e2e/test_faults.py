"""Every way a command can end leaves nothing behind and blocks nothing: a signal (SIGTERM, SIGHUP) in the middle
of a merge or a comparison, a full disk (injected ENOSPC, and a small tmpfs where this machine may mount one), a
save cut short. Each ends with one `error:` line, no lock, no partial folder, and every earlier output as it was."""

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bioqa.cli.merge as merge_script
import bioqa.cli.train as train_script
import bioqa.run_files
from bioqa.errors import InputError
from bioqa.io.inventory import not_written
from bioqa.io.outputs import output_lock
from helpers import ROOT, contents
from tiny_models import make_adapter, make_base


def leftovers(parent: Path, name: str) -> list[str]:
    """The lock and staging folders a command for `parent / name` could leave."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A base large enough (hidden 512) that a merge takes a few seconds: time to signal it mid-way."""
    t = tmp_path_factory.mktemp("wide")
    # Weights at a real model's scale (0.02): the merge's float32 check then reads ~5e-6, as on SmolLM2, on any CPU.
    # At the tiny models' 0.5 this random net amplifies summation order to 1.03e-4 on an AMD EPYC, past 1e-4.
    base = make_base(t / "base", hidden=512, init_range=0.02)
    return base, make_adapter(base, t / "adapter")


def started(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, *command], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env
    )


def signal_when(process: subprocess.Popen, appears, signum: int) -> None:
    deadline = time.time() + 120
    while not appears():
        assert process.poll() is None, "the command ended before it could be signalled"
        assert time.time() < deadline
        time.sleep(0.005)
    process.send_signal(signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_a_merge_leaves_no_lock_no_partial_folder_and_the_earlier_merge(wide, tmp_path, signum):
    base, adapter = wide
    out, log = tmp_path / "merged", tmp_path / "log"
    flags = ["merge_base_and_adapt_ft_models.py", "--adapter_dir", str(adapter), "--base_model", str(base)]
    assert merge_script.main([*flags[1:], "--output_dir", str(out)]) == 0
    before = contents(out)
    process = started([*flags, "--output_dir", str(out), "--overwrite"], log)
    signal_when(process, lambda: any(".partial-" in name for name in leftovers(tmp_path, "merged")), signum)
    assert process.wait(timeout=120) == 130
    errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: stopped by {signal.Signals(signum).name} during the run; nothing partial was kept; run the same "
        "command again"
    ]
    assert "Traceback" not in log.read_text()
    assert leftovers(tmp_path, "merged") == [] and contents(out) == before


def test_sigterm_during_a_comparison_leaves_no_lock_and_no_output(tmp_path):
    rows = [
        {"id": str(i), "question": "q", "reference": "insulin lowers glucose", "prediction": "insulin"}
        for i in range(40)
    ]
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out, log = tmp_path / "report", tmp_path / "log"
    process = started(
        ["-m", "bioqa.comparison", "--baseline", str(predictions), "--candidate", str(predictions)]
        + ["--output_dir", str(out), "--bootstrap_samples", "2000000"],
        log,
    )
    signal_when(process, lambda: (tmp_path / ".report.lock").exists(), signal.SIGTERM)
    assert process.wait(timeout=120) == 130
    assert "error: stopped by SIGTERM during the run" in log.read_text() and "Traceback" not in log.read_text()
    assert leftovers(tmp_path, "report") == [] and not out.exists()


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "model.safetensors")


def test_a_full_disk_during_a_merge_keeps_the_earlier_merge(wide, tmp_path, monkeypatch, capfd):
    base, adapter = wide
    out = tmp_path / "merged"
    flags = ["--adapter_dir", str(adapter), "--base_model", str(base), "--output_dir", str(out)]
    assert merge_script.main(flags) == 0
    before = contents(out)
    capfd.readouterr()
    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", no_space)
    assert merge_script.main([*flags, "--overwrite"]) == 1
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: no space left on the device (model.safetensors); the partial files were removed and earlier outputs "
        "are as they were: free some space (or choose another --output_dir) and run the same command again"
    ]
    assert leftovers(tmp_path, "merged") == [] and contents(out) == before


def test_a_lock_that_cannot_be_written_is_not_left_behind(tmp_path, monkeypatch):
    monkeypatch.setattr("bioqa.io.outputs.json.dump", no_space)
    with pytest.raises(InputError, match="cannot write the lock .* free some space"):
        with output_lock(tmp_path / "out", "output_dir"):
            pass
    assert leftovers(tmp_path, "out") == []


def test_a_checkpoint_cut_short_by_a_full_disk_is_removed(tiny_model_dir, qa_file, tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    monkeypatch.setattr("transformers.Trainer._save_rng_state", no_space)  # the Trainer's last file but one
    flags = ["--model_name_or_path", str(tiny_model_dir), "--train_file", str(qa_file), "--output_dir", str(out)]
    steps = ["--max_steps", "4", "--save_steps", "2", "--eval_strategy", "no", "--report_to", "none"]
    assert train_script.main([*flags, *steps, "--do_train"]) == 1
    assert "error: no space left on the device" in capfd.readouterr().err
    assert not list(out.glob("checkpoint-*")) and leftovers(tmp_path, "out") == []


def test_latest_names_an_incomplete_checkpoint_and_resumes_from_the_last_complete_one(tmp_path, caplog):
    from bioqa.train.resume import resume_checkpoint

    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4").mkdir()  # a save cut short: no trainer_state.json
    assert resume_checkpoint("latest", str(tmp_path)) == tmp_path / "checkpoint-2"
    assert "checkpoint-4 is incomplete" in caplog.text
    (tmp_path / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(InputError, match="no complete checkpoint in .*checkpoint-2, checkpoint-4 is incomplete"):
        resume_checkpoint("latest", str(tmp_path))


def test_a_merge_into_a_small_file_system_is_refused_before_it_writes(wide, tmp_path, capfd):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("this machine cannot mount a tmpfs (not root)")
    try:
        base, adapter = wide
        flags = ["--adapter_dir", str(adapter), "--base_model", str(base), "--output_dir", str(mount / "merged")]
        assert merge_script.main(flags) == 2
        assert "not enough disk space for the merged model" in capfd.readouterr().err
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def fail_on_metrics_json(write):
    def writing(path, *args, **kwargs):
        if Path(path).name == "metrics.json":
            no_space()
        return write(path, *args, **kwargs)

    return writing


@pytest.mark.parametrize("where", ["in the staging folder", "once the adapter is in place"])
def test_a_full_disk_while_training_writes_its_final_files_leaves_a_run_the_resume_completes(
    where, tiny_model_dir, qa_file, tmp_path, monkeypatch, capfd, caplog
):
    out = tmp_path / "out"
    flags = ["--model_name_or_path", str(tiny_model_dir), "--train_file", str(qa_file), "--output_dir", str(out)]
    steps = ["--max_steps", "4", "--save_steps", "4", "--eval_strategy", "no", "--report_to", "none", "--do_train"]
    with monkeypatch.context() as patched:
        if where == "in the staging folder":  # the adapter is written there; the model card fails
            patched.setattr("bioqa.run_files.write_model_card", no_space)
        else:  # the adapter, tokenizer and card moved in; metrics.json fails
            patched.setattr(
                "bioqa.run_files.write_json_atomic", fail_on_metrics_json(bioqa.run_files.write_json_atomic)
            )
        assert train_script.main([*flags, *steps]) == 1
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on the device (model.safetensors)")
    assert leftovers(tmp_path, "out") == [] and not (out / ".final-staging").exists()
    assert not_written(out, "load_models.py") is None  # all of it recorded: --overwrite_output_dir may replace it
    assert (out / "adapter_model.safetensors").exists() == (where == "once the adapter is in place")
    assert not (out / "metrics.json").exists()
    assert json.loads((out / "run_manifest.json").read_text())["status"] == "training"  # never called finished
    (out / ".final-staging").mkdir()  # as a run killed (SIGKILL) while saving would leave it: the resume drops it
    (out / ".final-staging" / "stale.bin").write_text("from the killed run")
    caplog.set_level(logging.INFO, logger="bioqa")
    assert train_script.main([*flags, *steps, "--resume_from_checkpoint", "latest"]) == 0
    assert "checkpoint-4 is the last step (4 of 4): training is complete" in caplog.text
    assert all((out / name).is_file() for name in ["README.md", "adapter_model.safetensors", "metrics.json"])
    assert not (out / ".final-staging").exists() and not (out / "stale.bin").exists()
    assert json.loads((out / "run_manifest.json").read_text())["finished_at"]
    assert (out / "adapter_model.safetensors").read_bytes() == (
        out / "checkpoint-4" / "adapter_model.safetensors"
    ).read_bytes()
