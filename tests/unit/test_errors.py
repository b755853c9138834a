"""bioqa.errors: library messages name settings as Python callers write them, commands as flags."""

import pytest

from bioqa.cli.runner import exit_code, run_main
from bioqa.data import splits as data
from bioqa.errors import InputError, Interrupted, RunError, option, options_spelled_as_flags
from bioqa.settings import DataArguments


def test_a_setting_is_spelled_as_a_flag_only_inside_a_command():
    assert option("lora_r") == "lora_r"
    with options_spelled_as_flags():
        assert option("lora_r") == "--lora_r"
    assert option("lora_r") == "lora_r"


def test_the_same_library_error_reads_as_python_or_as_a_command_line(capsys):
    args = DataArguments(dataset_name=None)
    with pytest.raises(InputError, match=r"^no data: give train_file \(to train and split\), test_file"):
        data.load_splits(args)
    assert run_main(lambda: data.load_splits(args)) == 2
    assert capsys.readouterr().err.startswith("error: no data: give --train_file (to train and split), --test_file")
    assert option("train_file") == "train_file"  # the command's spelling does not outlive it


def test_exit_codes_follow_the_kind_of_error():
    assert [exit_code(e) for e in (InputError("x"), RunError("x"), Interrupted("x"))] == [2, 1, 130]
