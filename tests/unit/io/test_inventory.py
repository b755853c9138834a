"""The inventory of an output folder (bioqa.io.inventory): --overwrite deletes exactly what a command recorded
writing, and anything else at any depth, or changed since, makes it refuse."""

import os

import pytest

from bioqa.io.inventory import INVENTORY, file_records, not_written, read_inventory, record, remove_recorded

COMMAND = "load_models.py"


@pytest.fixture
def run(tmp_path):
    """A training output as the command leaves it: files at the top, in predictions/ and in a checkpoint."""
    out = tmp_path / "out"
    for path in ("run_config.yaml", "adapter_model.safetensors", "predictions/eval-step-8.jsonl", "checkpoint-8/a.bin"):
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(f"content of {path}")
    record(out, COMMAND, "run_config.yaml", "adapter_model.safetensors", "predictions/eval-step-8.jsonl")
    record(out, COMMAND, "checkpoint-8")  # a folder: every file below it
    return out


def test_a_folder_holding_only_recorded_files_is_the_commands_own(run):
    assert not_written(run, COMMAND) is None
    assert sorted(read_inventory(run)["files"]) == [
        "adapter_model.safetensors",
        "checkpoint-8/a.bin",
        "predictions/eval-step-8.jsonl",
        "run_config.yaml",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "predictions/my_error_analysis.md",
        "predictions/my_analysis.ipynb",
        "runs/notes.txt",
        "checkpoint-mine/best.txt",
        "checkpoint-8/best.txt",
        "vocab.notes",
        "my.model",
        "tokenizer_notes.txt",
        "model-notes.safetensors",
        "a/b/c/d/deep.txt",
    ],
)
def test_a_file_the_command_did_not_write_is_named_at_any_depth(run, path):
    (run / path).parent.mkdir(parents=True, exist_ok=True)
    (run / path).write_text("the user's")
    assert not_written(run, COMMAND) == f"{path} is not one of the files it wrote"


def test_a_changed_file_an_empty_folder_and_a_link_are_not_the_commands(run):
    file = run / "run_config.yaml"
    stat = file.stat()
    file.write_text("content of run_config.yamX")  # the same size, another content and time
    assert not_written(run, COMMAND) == "run_config.yaml was changed after it was written"
    file.write_text("content of run_config.yaml")
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the same bytes, touched: still its own
    assert not_written(run, COMMAND) is None
    (run / "mine").mkdir()
    assert not_written(run, COMMAND) == "mine/ is not a folder it wrote"
    (run / "mine").rmdir()
    (run / "predictions" / "link").symlink_to(run / "checkpoint-8")
    assert not_written(run, COMMAND) == "predictions/link is not one of the files it wrote"


def test_another_commands_output_or_one_without_an_inventory_is_refused(run):
    assert not_written(run, "merge_base_and_adapt_ft_models.py") == f"{INVENTORY} says 'load_models.py' wrote it"
    (run / INVENTORY).write_text("{damaged")
    assert not_written(run, COMMAND).startswith(f"it has no {INVENTORY}")


def test_removing_deletes_exactly_the_recorded_files_and_the_folders_they_leave_empty(run):
    (run / "predictions" / "mine.md").write_text("the user's")  # only ever removed after not_written said none
    assert len(remove_recorded(run)) == 4
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == ["predictions", "predictions/mine.md"]


def test_records_of_files_that_are_gone_are_dropped(run):
    (run / "checkpoint-8" / "a.bin").unlink()  # the Trainer rotated the checkpoint out
    (run / "checkpoint-8").rmdir()
    record(run, COMMAND, "metrics.json")  # a path that does not exist is not recorded either
    assert "checkpoint-8/a.bin" not in read_inventory(run)["files"]
    assert "metrics.json" not in read_inventory(run)["files"]
    assert not_written(run, COMMAND) is None


def test_file_records_cover_a_staged_folder_at_every_depth(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x").write_bytes(b"abc")
    (tmp_path / INVENTORY).write_text("{}")
    records = file_records(tmp_path)
    assert list(records) == ["sub/x"]
    assert records["sub/x"]["size"] == 3
    assert records["sub/x"]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
