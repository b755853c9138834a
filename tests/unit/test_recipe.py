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


DERIVED = ("greater_is_better", "metric_for_best_model", "eval_steps", "do_eval")


@pytest.mark.parametrize(
    "steps",
    [
        [{"load_best_model_at_end": True}, {"metric_for_best_model": "eval_rougeL"}],
        [{"metric_for_best_model": "eval_rougeL"}, {"metric_for_best_model": "eval_loss"}],
        [{"eval_strategy": "steps"}, {"logging_steps": 3}],
        [{"eval_strategy": "steps", "eval_steps": 7}, {"logging_steps": 3}],
        [{"eval_strategy": "no", "save_strategy": "no"}],
        [{"gradient_checkpointing": True}],
    ],
    ids=["best-then-metric", "metric-twice", "steps-then-logging", "eval-steps-kept", "no-eval", "old-alias"],
)
def test_changes_in_steps_give_what_the_command_gives_in_one_go(recipe, steps):
    """What transformers derives (greater_is_better from the metric, eval_steps from logging_steps, ...) follows
    each change, as a fresh parse of all the changes together would have it."""
    changed, together = recipe, {}
    for step in steps:
        changed, together = changed.replace(**step), together | step
    flags = [token for name, value in together.items() for token in (f"--{name}", str(value))]
    fresh = parse(["--config", str(ROOT / "configs" / "demo-smollm2-cpu.yaml"), "--output_dir", "x", *flags])
    for name in (*DERIVED, *together, "activation_checkpointing"):
        assert getattr(changed.training, name, None) == getattr(fresh.training, name, None), name


def test_values_of_another_type_or_outside_the_choices_are_refused_together(recipe):
    with pytest.raises(InputError) as info:
        recipe.replace(use_chat_template=True, learning_rate="1e-3", eval_metrics="rouge", label_scoring="loglk")
    message = str(info.value)
    assert message.startswith("4 problems: ") and "--" not in message
    assert "use_chat_template is true, but it takes one of auto, yes, no" in message
    assert 'learning_rate is "1e-3" (str), but it takes float' in message
    assert 'eval_metrics is "rouge" (str), but it takes a list of str' in message
    assert 'label_scoring is "loglk", but it takes one of generate, loglik, both' in message


def test_transformers_own_checks_are_input_errors_that_name_settings_as_python_does(recipe):
    best = recipe.replace(load_best_model_at_end=True, metric_for_best_model="eval_rougeL")
    with pytest.raises(InputError, match=r"^(?!.*--).*load_best_model_at_end requires the save and eval strategy"):
        best.replace(eval_strategy="steps")
    with pytest.raises(InputError, match=r"step is not a valid IntervalStrategy"):
        recipe.replace(eval_strategy="step")
