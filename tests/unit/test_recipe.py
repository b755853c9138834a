"""A recipe: every setting of a run in one value; written as YAML that --config reads back, changed by name."""

import pytest

from bioqa.errors import InputError
from bioqa.recipe import parse_recipe as parse
from helpers import ROOT


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return parse(["--config", str(ROOT / "configs" / "demo-smollm2-cpu.yaml"), "--output_dir", str(out)])


def test_a_recipe_written_as_yaml_reads_back_the_same(recipe, tmp_path):
    recipe.to_yaml(tmp_path / "recipe.yaml")
    again = parse(["--config", str(tmp_path / "recipe.yaml")])
    assert again.settings() == recipe.settings()
    assert again.settings()["max_seq_length"] == 384  # the demo's, not the default 1024


def test_replace_changes_only_the_named_settings_and_leaves_the_recipe_as_it_was(recipe):
    before = recipe.settings()
    changed = recipe.replace(learning_rate=1e-3, lora_r=8, system_prompt="Answer briefly.")
    after = changed.settings()
    assert (after["learning_rate"], after["lora_r"], after["system_prompt"]) == (1e-3, 8, "Answer briefly.")
    assert {k: v for k, v in after.items() if k not in ("learning_rate", "lora_r", "system_prompt")} == {
        k: v for k, v in before.items() if k not in ("learning_rate", "lora_r", "system_prompt")
    }
    assert recipe.settings() == before and changed.training is not recipe.training


def test_a_setting_no_section_has_is_named_with_the_close_ones(recipe):
    with pytest.raises(InputError, match=r"a recipe has no setting lora_rank \(did you mean .*\blora_r\b"):
        recipe.replace(lora_rank=8)
