"""Every setting declares one role, and what a resume keeps, what a zero-shot run shares and what the model card
shows follow from the roles."""

import dataclasses
from pathlib import Path

import pytest
import transformers

from bioqa import settings
from bioqa.errors import InputError
from bioqa.io.files import write_yaml_atomic
from bioqa.recipe import config_dict
from bioqa.recipe import parse_recipe as parse
from bioqa.roles import TRAINER_ROLES, Role
from bioqa.train.resume import check_same_settings


def test_every_setting_of_the_training_command_has_a_role():
    for section in settings.sections():
        for setting in dataclasses.fields(section):
            if setting.init:
                assert isinstance(settings.role_of(setting), Role), setting.name


def test_the_trainer_table_names_exactly_the_pinned_transformers_fields():
    # fails when a transformers pin adds or drops a TrainingArguments field: classify it in bioqa/roles.py
    pinned = {f.name for f in dataclasses.fields(transformers.TrainingArguments) if f.init}
    assert sorted(pinned - TRAINER_ROLES.keys()) == [] and sorted(TRAINER_ROLES.keys() - pinned) == []


def test_a_setting_without_a_role_is_an_error():
    @dataclasses.dataclass
    class Section:
        unclassified: int = 0

    with pytest.raises(KeyError, match="unclassified"):
        settings.role_of(dataclasses.fields(Section)[0])


def test_the_settings_that_change_the_training_text_are_kept_by_a_resume():
    # the drift the hand-kept list had: each of these changes the text the model is trained on
    resumed = settings.resumed_settings()
    for name in ("target", "label_field", "options_field", "labels", "question_template", "validation_file"):
        assert name in resumed, name
    for name in ("generation_max_new_tokens", "eval_metrics", "output_dir", "logging_steps", "eval_strategy"):
        assert name not in resumed, name


def test_answer_shaping_settings_are_the_example_and_generation_roles():
    shaping = settings.answer_settings()
    for name in ("system_prompt", "question_template", "answer_prefix", "target", "labels", "label_scoring"):
        assert name in shaping, name
    for name in ("generation_eval_samples", "eval_metrics", "learning_rate", "train_file", "output_dir"):
        assert name not in shaping, name
    assert all(name in shaping for name in settings.resumed_settings() if name.startswith("generation_"))


def changed(value):
    """Another value of the same type, different after resume's normalisation."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return [*value, "other"] if not value or isinstance(value[0], str) else [value[0] / 2, *value[1:]]
    return "other" if value is None else f"{value}-other"


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    config = config_dict(*parse(["--output_dir", str(out), "--do_train", "--train_file", "train.jsonl"]))
    write_yaml_atomic(out / "run_config.yaml", config)
    (out / "checkpoint-4").mkdir()
    return out / "checkpoint-4", config


@pytest.mark.parametrize("name", settings.resumed_settings())
def test_changing_any_resumed_setting_alone_is_refused_and_named(saved_run, name):
    checkpoint, config = saved_run
    with pytest.raises(InputError, match=f"resuming .* with other training settings \\({name} "):
        check_same_settings(checkpoint, {**config, name: changed(config.get(name))})


@pytest.mark.parametrize("name", ["generation_max_new_tokens", "eval_metrics", "logging_steps", "bootstrap_samples"])
def test_changing_a_setting_a_resume_does_not_keep_is_allowed(saved_run, name):
    checkpoint, config = saved_run
    check_same_settings(checkpoint, {**config, name: changed(config.get(name))})
