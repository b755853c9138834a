"""--overwrite by inventory, on the real outputs of each command: every file a run writes is recorded, a user's
file at any depth makes the overwrite refuse (naming it, nothing touched), and without one it replaces the output."""

import shutil

import pytest

import bioqa.cli.compare as compare_script
import bioqa.cli.merge as merge_script
import bioqa.cli.train as train_script
from bioqa.io.inventory import not_written, read_inventory
from helpers import TRAIN, contents


@pytest.fixture
def earlier_run(trained, tmp_path):
    """A copy of a finished training run (adapter, checkpoints, evaluation predictions, TensorBoard logs,
    --do_predict files); copytree keeps the modification times, as moving a folder does."""
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy, symlinks=True)
    return copy


def test_every_file_a_training_run_writes_is_in_its_inventory(trained):
    out, _ = trained
    assert not_written(out, "load_models.py") is None
    recorded = read_inventory(out)["files"]
    for kind in ("runs/", "checkpoint-", "predictions/eval-step-", "predictions.jsonl", "adapter_model.safetensors"):
        assert any(path.startswith(kind) for path in recorded), kind


USER_FILES = [
    "predictions/my_error_analysis.md",
    "predictions/my_analysis.ipynb",
    "runs/notes.txt",
    "checkpoint-mine/best.txt",
    "vocab.notes",
    "my.model",
    "tokenizer_notes.txt",
]


@pytest.mark.parametrize("stage", ["--do_train", "--do_predict"])
@pytest.mark.parametrize("user_file", USER_FILES)
def test_overwriting_a_run_that_holds_a_users_file_is_refused_and_changes_nothing(
    earlier_run, tiny_model_dir, qa_file, capfd, stage, user_file
):
    (earlier_run / user_file).parent.mkdir(parents=True, exist_ok=True)
    (earlier_run / user_file).write_text("the user's own work")
    before = contents(earlier_run)
    flags = ["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(earlier_run), "--overwrite_output_dir"]
    data = ["--train_file", str(qa_file)] if stage == "--do_train" else ["--test_file", str(qa_file)]
    assert train_script.main([*flags, *data, stage, *TRAIN]) == 2
    err = capfd.readouterr().err
    assert f"holds files load_models.py did not write: {user_file} is not one of the files it wrote" in err
    assert contents(earlier_run) == before
    assert not (earlier_run.parent / f".{earlier_run.name}.lock").exists()


def test_a_merge_overwrites_only_its_own_files(trained, tiny_model_dir, tmp_path, capfd):
    adapter = tmp_path / "adapter"
    shutil.copytree(trained[0], adapter)
    (adapter / "tokenizer.bak").write_text("the user's backup")  # beside the adapter: never copied into the merge
    out, flags = tmp_path / "merged", ["--adapter_dir", str(adapter), "--base_model", str(tiny_model_dir)]
    assert merge_script.main([*flags, "--output_dir", str(out)]) == 0
    assert not (out / "tokenizer.bak").exists()
    assert not_written(out, "merge_base_and_adapt_ft_models.py") is None
    for user_file in ("model-notes.safetensors", "tokenizer.bak", "sub/notes.md"):
        (out / user_file).parent.mkdir(exist_ok=True)
        (out / user_file).write_text("the user's")
        before = contents(out)
        assert merge_script.main([*flags, "--output_dir", str(out), "--overwrite"]) == 2
        assert f"{user_file} is not one of the files it wrote" in capfd.readouterr().err
        assert contents(out) == before
        (out / user_file).unlink()
    (out / "sub").rmdir()
    assert merge_script.main([*flags, "--output_dir", str(out), "--overwrite"]) == 0
    assert not_written(out, "merge_base_and_adapt_ft_models.py") is None


def test_a_comparison_overwrites_only_its_own_files(trained, tmp_path, capfd):
    predictions = str(trained[0] / "predictions.jsonl")
    out = tmp_path / "report"
    flags = ["--baseline", predictions, "--candidate", predictions, "--output_dir", str(out), "--bootstrap_samples"]
    assert compare_script.main([*flags, "20"]) == 0
    assert not_written(out, "bioqa.comparison") is None
    (out / "report-notes.md").write_text("the user's")
    before = contents(out)
    assert compare_script.main([*flags, "20", "--overwrite"]) == 2
    assert "report-notes.md is not one of the files it wrote" in capfd.readouterr().err
    assert contents(out) == before
    (out / "report-notes.md").unlink()
    assert compare_script.main([*flags, "20", "--overwrite"]) == 0
