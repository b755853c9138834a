"""Options: YAML configs under command-line flags, unknown keys, wrong types, shipped recipes."""

from pathlib import Path

import pytest

from bioqa.checks import argument_problems
from bioqa.errors import InputError, options_spelled_as_flags, raise_problems
from bioqa.recipe import config_dict
from bioqa.recipe import parse_recipe as parse
from helpers import ROOT


@pytest.fixture(autouse=True)
def as_the_command_spells_settings():
    """These are load_models.py's parses: its messages name settings by their flags."""
    with options_spelled_as_flags():
        yield


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_values_and_command_line_override(tmp_path):
    config = write(
        tmp_path / "run.yaml",
        "lora_r: 8\nlearning_rate: 1.0e-3\nlora_target_modules: [q_proj, v_proj]\n"
        "generation_eval: false\nsplit_ratios: [0.7, 0.2, 0.1]\noutput_dir: out\n",
    )
    opts = parse(["--config", str(config), "--lora_r", "4"])
    assert opts.adapter.lora_r == 4  # the command line wins
    assert opts.training.learning_rate == 1e-3 and opts.training.output_dir == "out"
    assert opts.adapter.lora_target_modules == ["q_proj", "v_proj"]
    assert opts.evaluation.generation_eval is False and opts.data.split_ratios == [0.7, 0.2, 0.1]


def test_toolkit_defaults_on_training_arguments():
    opts = parse([])
    assert opts.training.learning_rate == 2e-4 and opts.training.train_sampling_strategy == "group_by_length"
    assert opts.training.eval_strategy == "epoch" and opts.model.model_name_or_path.endswith("SmolLM2-135M-Instruct")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("lora_rank: 8\n", "unknown key 'lora_rank'; did you mean 'local_rank' or 'lora_r'?"),
        ("zzz_not_an_option: 1\n", "unknown key 'zzz_not_an_option'; see --help"),
        ("lora_r: eight\n", "run.yaml: argument --lora_r/--lora-r: invalid int value: 'eight'"),
        ("- a list\n", "must hold a mapping"),
        ("lora_r: [1\n", "is not valid YAML"),
        ("use_chat_template: no\n", "run.yaml: key 'use_chat_template' is false (YAML reads unquoted yes, no"),
        ("lora_r: [8, 16]\n", "run.yaml: key 'lora_r' is a list ([8, 16]), but it takes one int value"),
        ("lora_r: 8\nlora_alpha: 4\nlora_r: 16\n", "key 'lora_r' is given twice (again on line 3)"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
            "its aliases expand to more than 10000 values",
        ),
    ],
)
def test_bad_yaml_names_the_file_and_key(tmp_path, text, fragment):
    config = write(tmp_path / "run.yaml", text)
    with pytest.raises(InputError) as info:
        parse(["--config", str(config)])
    assert fragment in str(info.value)


def test_quoted_choice_and_small_aliases_are_fine_and_config_twice_is_refused(tmp_path):
    config = write(
        tmp_path / "run.yaml",
        'use_chat_template: "no"\ntargets: &t [q_proj, v_proj]\n'.replace("targets", "lora_target_modules"),
    )
    opts = parse(["--config", str(config)])
    assert opts.prompt.use_chat_template == "no" and opts.adapter.lora_target_modules == ["q_proj", "v_proj"]
    with pytest.raises(InputError, match="--config given 2 times"):
        parse(["--config", str(config), "--config=" + str(config)])


def test_error_lines_are_cut_to_a_readable_length(capsys):
    from bioqa.cli.runner import ERROR_LINE_LIMIT, run_main

    def fail():
        raise InputError("x" * 50_000_000)

    assert run_main(fail) == 2
    assert len(capsys.readouterr().err) <= ERROR_LINE_LIMIT + 10


def test_missing_config_and_bad_flag():
    with pytest.raises(InputError, match="--config nope.yaml does not exist"):
        parse(["--config", "nope.yaml"])
    with pytest.raises(InputError, match="unrecognized arguments: --lora_rank 8; did you mean"):
        parse(["--lora_rank", "8"])


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_parse(recipe):
    opts = parse(["--config", str(recipe)])
    assert opts.model.model_name_or_path and opts.training.output_dir.startswith("outputs/")
    assert not argument_problems(opts)


def test_resolved_config_round_trips(tmp_path):
    import yaml

    opts = parse(["--lora_r", "4", "--max_steps", "7", "--eval_metrics", "rouge", "bleu"])
    saved = write(tmp_path / "run_config.yaml", yaml.safe_dump(config_dict(*opts)))
    again = parse(["--config", str(saved)])
    assert config_dict(*again) == config_dict(*opts)


def test_argument_problems_are_reported_together():
    opts = parse(["--lora_r", "0", "--learning_rate", "-1", "--per_device_train_batch_size", "0"])
    problems = argument_problems(opts)
    assert len(problems) == 3
    with pytest.raises(InputError, match="3 problems: --lora_r must be positive, got 0 | --learning_rate"):
        raise_problems(problems)


def test_atomic_writes_leave_a_normal_file_and_no_temporary(tmp_path):
    import os

    from bioqa.io.files import write_json_atomic

    write_json_atomic(tmp_path / "m.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
