"""A resume continues the run it names: every setting that changes what is trained is compared with the run's
run_config.yaml, one at a time here, and a run whose run_config.yaml is gone cannot be checked, so it is refused."""

import pytest
import yaml

from bioqa.errors import InputError
from bioqa.recipe import Recipe
from bioqa.settings import resumed_settings
from bioqa.train.resume import check_same_settings

CURRENT = Recipe.defaults(train_file="qa.jsonl").settings()


def checkpoint_of(folder, settings):
    (folder / "checkpoint-4").mkdir(parents=True)
    (folder / "run_config.yaml").write_text(yaml.safe_dump(settings))
    return folder / "checkpoint-4"


def another(value):
    """A value of the same kind that differs."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return [*value, "other"]
    if isinstance(value, dict):
        return {**value, "other": 1}
    return "other" if value is None else f"{value}-other"


@pytest.mark.parametrize("name", resumed_settings())
def test_each_setting_a_resume_keeps_is_compared(name, tmp_path):
    saved = {**CURRENT, name: another(CURRENT[name])}
    with pytest.raises(InputError) as refused:
        check_same_settings(checkpoint_of(tmp_path, saved), CURRENT)
    assert f"with other training settings ({name} " in str(refused.value)


def test_the_same_settings_resume_and_run_settings_may_change(tmp_path):
    check_same_settings(checkpoint_of(tmp_path / "same", CURRENT), CURRENT)  # no error
    free = {**CURRENT, "generation_max_new_tokens": 7, "logging_steps": 3, "bootstrap_samples": 5}
    check_same_settings(checkpoint_of(tmp_path / "free", free), CURRENT)


def test_a_run_without_its_run_config_is_refused(tmp_path):
    checkpoint = checkpoint_of(tmp_path, CURRENT)
    (tmp_path / "run_config.yaml").unlink()
    with pytest.raises(InputError, match="cannot check that the resumed run keeps its settings: .* is missing"):
        check_same_settings(checkpoint, CURRENT)


def test_a_path_given_another_way_is_the_same_setting(tmp_path, monkeypatch):
    """The run started with an absolute path, the resume gives it relative to where it runs: the same file."""
    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir()
    data.write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    check_same_settings(
        checkpoint_of(tmp_path / "run", {**CURRENT, "train_file": str(data)}),
        {**CURRENT, "train_file": "data/train.jsonl"},
    )
    with pytest.raises(InputError, match="train_file"):
        other = tmp_path / "data" / "other.jsonl"
        other.write_text("{}\n")
        check_same_settings(
            checkpoint_of(tmp_path / "run2", {**CURRENT, "train_file": str(other)}),
            {**CURRENT, "train_file": "data/train.jsonl"},
        )
