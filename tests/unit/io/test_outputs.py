"""Output folders (bioqa.io.outputs): never an input, --overwrite replaces only a command's own output, one writer."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from bioqa.errors import InputError
from bioqa.io.inventory import INVENTORY, file_records, write_inventory
from bioqa.io.outputs import (
    COMPARISON_OUTPUT,
    MERGE_OUTPUT,
    TRAINING_OUTPUT,
    check_not_an_input,
    check_output_folder,
    lock_path,
    output_lock,
    run_folder,
)
from helpers import TRAIN, run_cli, run_flags


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "runs" / "adapter").mkdir(parents=True)
    (tmp_path / "runs" / "adapter" / "adapter_config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qa.jsonl").write_text("{}\n")
    (tmp_path / "alias").symlink_to(tmp_path / "runs")
    return tmp_path


@pytest.mark.parametrize(
    "out, relation",
    [
        ("runs/adapter", "is"),
        ("runs", "contains"),
        ("runs/adapter/merged", "lies inside"),
        ("alias/adapter/x", "lies inside"),
        ("data", "contains"),
        ("alias", "contains"),
    ],
)
def test_an_output_that_is_contains_or_lies_inside_an_input_is_refused(tree, out, relation):
    inputs = {"adapter": tree / "runs" / "adapter", "training file": tree / "data" / "qa.jsonl"}
    with pytest.raises(InputError, match=f"{relation} the (adapter|training file)"):
        check_not_an_input(tree / out, "--output_dir", inputs)


def test_siblings_and_hub_ids_are_not_inputs(tree):
    inputs = {
        "adapter": tree / "runs" / "adapter",
        "base model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "tokenizer": None,
    }
    check_not_an_input(tree / "runs" / "adapter-merged", "--output_dir", inputs)
    check_not_an_input(tree / "data-out", "--output_dir", inputs)


def test_overwrite_accepts_only_the_commands_own_earlier_output(tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    for name in ("merge_report.json", "config.json", "model.safetensors", "tokenizer.json"):
        (out / name).write_text("x")
    with pytest.raises(InputError, match=f"it has no {INVENTORY}"):  # files alone prove nothing
        check_output_folder(out, "--output_dir", MERGE_OUTPUT, True, "")
    write_inventory(out, MERGE_OUTPUT, file_records(out))
    check_output_folder(out, "--output_dir", MERGE_OUTPUT, True, "")
    with pytest.raises(InputError, match="is not empty"):
        check_output_folder(out, "--output_dir", MERGE_OUTPUT, False, "pass --overwrite")
    with pytest.raises(InputError, match="bioqa.comparison did not write"):  # another command's output
        check_output_folder(out, "--output_dir", COMPARISON_OUTPUT, True, "")
    (out / "model-notes.safetensors").write_text("mine")  # a name the merge might write: still not written by it
    with pytest.raises(InputError, match="model-notes.safetensors is not one of the files it wrote"):
        check_output_folder(out, "--output_dir", MERGE_OUTPUT, True, "")


def test_a_symlinked_output_folder_is_refused(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputError, match="is a symbolic link"):
        check_output_folder(tmp_path / "link", "--output_dir", TRAINING_OUTPUT, True, "")


def test_the_lock_admits_one_writer_and_reports_a_stale_one(tmp_path):
    out = tmp_path / "out"
    with output_lock(out, "--output_dir"):
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(InputError, match=f"is in use by process {os.getpid()} on"):
            with output_lock(out, "--output_dir"):
                pass
    assert not lock_path(out).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(out).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with pytest.raises(
        InputError, match=f"stale lock .* left by process {dead.pid} .*rm {re.escape(str(lock_path(out)))}"
    ):
        with output_lock(out, "--output_dir"):
            pass


def test_run_folder_of_prediction_files(tmp_path):
    (tmp_path / "run" / "predictions").mkdir(parents=True)
    (tmp_path / "run" / "run_manifest.json").write_text("{}")
    assert run_folder(tmp_path / "run" / "predictions.jsonl") == tmp_path / "run"
    assert run_folder(tmp_path / "run" / "predictions" / "eval-final.jsonl") == tmp_path / "run"
    assert run_folder(tmp_path / "loose.jsonl") is None


@pytest.mark.slow
def test_overwrite_output_dir_clears_the_earlier_run_so_checkpoints_never_mix(
    trained, tiny_model_dir, qa_file, tmp_path
):
    out = tmp_path / "out"
    shutil.copytree(trained[0], out)
    args = [a if a != "24" else "8" for a in TRAIN]
    result = run_cli(
        *run_flags(tiny_model_dir, qa_file, out),
        "--overwrite_output_dir",
        *args,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-8"]
    assert not (out / "predictions.jsonl").exists()  # the earlier run's --do_predict output is gone too
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 8


@pytest.mark.parametrize("content", ["", "[1]", '{"pid": "x"}'])
def test_a_lock_without_a_readable_owner_is_refused_with_how_to_remove_it(tmp_path, content):
    out = tmp_path / "out"
    lock_path(out).write_text(content)
    with pytest.raises(InputError, match=f"names no owner .*rm -r {re.escape(str(lock_path(out)))}"):
        with output_lock(out, "--output_dir"):
            pass


RACER = """
import sys, time
from pathlib import Path
from bioqa.errors import InputError
from bioqa.io.outputs import output_lock

out, gate = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not (gate / "go").exists():
    time.sleep(0.001)
try:
    with output_lock(out, "--output_dir"):
        print("won", flush=True)
        while not (gate / "release").exists():  # held until every racer has tried
            time.sleep(0.001)
except InputError as exc:
    print("refused", exc, flush=True)
"""


def test_racers_released_at_one_moment_let_exactly_one_hold_the_lock(tmp_path):
    out, gate = tmp_path / "out", tmp_path / "gate"
    gate.mkdir()
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(out), str(gate)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    try:
        assert [racer.stdout.readline() for racer in racers] == ["ready\n"] * 6
        (gate / "go").touch()
        results = [racer.stdout.readline().strip() for racer in racers]  # each racer's attempt, as it ends
    finally:  # never a racer left waiting, whatever failed
        (gate / "go").touch()
        (gate / "release").touch()
    assert [racer.wait(timeout=60) for racer in racers] == [0] * 6
    winners = [racer.pid for racer, result in zip(racers, results) if result == "won"]
    assert len(winners) == 1, results
    for result in results:
        # a racer that reads the lock before its owner wrote its record is told so; any other names the winner
        assert result == "won" or re.match(
            rf"refused .*(is in use by process {winners[0]} on|exists but names no owner \(a run starting)", result
        ), result
    assert not lock_path(out).exists()
