"""The adapter's peft config from the recipe's settings, and the method kinds the merge knows without peft."""

import pytest
from peft import IA3Config, LoHaConfig, LoraConfig
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

from bioqa.errors import InputError
from bioqa.settings import AdapterArguments
from bioqa.train.peft_methods import (
    PROMPT_LEARNING,
    UNMERGEABLE,
    converted_init,
    merge_refusal,
    peft_config,
    peft_problems,
    unconverted_init,
)


def test_the_prompt_learning_kinds_are_the_ones_peft_has():
    """The merge reads adapter folders without importing peft: its list must follow the installed peft."""
    derived = set()
    for kind, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        bare = object.__new__(cls)  # the two properties depend on the class only; some configs need arguments
        if bare.is_prompt_learning or bare.is_adaption_prompt:
            derived.add(kind.value)
    assert derived == PROMPT_LEARNING
    assert set(UNMERGEABLE) <= {kind.value for kind in PEFT_TYPE_TO_CONFIG_MAPPING}


def test_lora_takes_the_lora_settings_and_peft_options():
    config = peft_config(
        AdapterArguments(
            lora_r=8,
            lora_alpha=24,
            use_dora=True,
            use_rslora=True,
            lora_target_modules=["q_proj", "v_proj"],
            peft_options={"init_lora_weights": "pissa", "layers_to_transform": [0]},
        )
    )
    assert isinstance(config, LoraConfig) and config.task_type == "CAUSAL_LM"
    assert (config.r, config.lora_alpha, config.use_dora, config.use_rslora) == (8, 24, True, True)
    assert set(config.target_modules) == {"q_proj", "v_proj"} and config.layers_to_transform == [0]
    assert converted_init(config) and config.init_lora_weights == "pissa"
    assert peft_config(AdapterArguments()).target_modules == "all-linear"  # peft's own keyword


def test_other_methods_get_targets_and_their_own_options_only():
    ia3 = peft_config(AdapterArguments(peft_method="IA3", modules_to_save=["lm_head"]))
    assert isinstance(ia3, IA3Config) and ia3.target_modules == "all-linear" and ia3.modules_to_save == ["lm_head"]
    loha = peft_config(AdapterArguments(peft_method="loha", peft_options={"r": 4, "alpha": 4}))
    assert isinstance(loha, LoHaConfig) and (loha.r, loha.alpha) == (4, 4)
    assert not converted_init(loha)


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        ({"peft_method": "loraa"}, ["peft_method loraa is not a peft method (did you mean 'lora'"]),
        ({"peft_method": "p_tuning"}, ["p_tuning is a prompt-learning method"]),
        (
            {"peft_options": {"fan_in_fan_ot": True}},
            ["key 'fan_in_fan_ot' is no field of peft's LoraConfig (did you mean 'fan_in_fan_out'"],
        ),
        ({"peft_options": {"target_modules": ["q_proj"]}}, ["sets target_modules, which lora_target_modules sets"]),
        ({"peft_options": {"use_dora": True}}, ["sets use_dora, which use_dora sets"]),
        ({"peft_options": {"task_type": "SEQ_CLS"}}, ["task_type, which is always CAUSAL_LM"]),
        ({"peft_options": {"init_lora_weights": "corda"}}, ["init_lora_weights corda needs a pass over data"]),
        ({"peft_method": "ia3", "lora_r": 8}, ["lora_r is a LoRA setting and peft_method is ia3; ia3 has no r"]),
        ({"peft_method": "xlora", "modules_to_save": ["lm_head"]}, ["modules_to_save has no counterpart in peft's"]),
        ({"peft_method": "loha", "lora_alpha": 4}, ["give loha's own field in peft_options instead: '{\"alpha\": 4}'"]),
        ({"peft_method": "lokr", "use_dora": True, "lora_dropout": 0.1}, ["lora_dropout is a LoRA", "use_dora is a"]),
        (
            {
                "peft_method": "ia3",
                "peft_options": {"feedforward_modules": ["down_proj"]},
                "lora_target_modules": ["q_proj"],
            },
            ["peft's IA3Config refused the settings"],
        ),
    ],
)
def test_every_problem_is_named_before_weights_load(settings, fragments):
    problems = peft_problems(AdapterArguments(**settings))
    assert len(problems) == len(fragments)
    for problem, fragment in zip(problems, fragments, strict=True):
        assert fragment in problem
    with pytest.raises(InputError, match="peft_method|peft_options|lora|use_dora|refused"):
        peft_config(AdapterArguments(**settings))


def test_the_merge_refuses_what_cannot_be_merged_and_notices_unconverted_inits():
    assert "prompt learning" in merge_refusal("PREFIX_TUNING") and "virtual tokens" in merge_refusal("CPT")
    assert "peft cannot merge a POLY adapter" in merge_refusal("POLY")
    assert merge_refusal("LORA") is None and merge_refusal("IA3") is None and merge_refusal("LOHA") is None
    assert unconverted_init({"init_lora_weights": "pissa_niter_4"}) == "pissa_niter_4"
    assert unconverted_init({"init_lora_weights": "olora"}) == "olora"
    assert unconverted_init({"init_lora_weights": True}) is None and unconverted_init({}) is None
