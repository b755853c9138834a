"""The adapter peft trains, from a recipe's adapter settings: the method by name (`lora` with its variants DoRA,
rsLoRA and PiSSA/OLoRA initialisation, `ia3`, `loha`, `lokr`, `oft`, ...), built as peft's own config class with
the user's options, and checked before any weights load.

The toolkit trains, generates with and merges weight adapters; the prompt-learning methods (prompt, prefix and
p-tuning) add virtual tokens instead, which its generation does not feed and a merge cannot fold into weights.
The sets of method kinds the merge must know are spelled out here, because reading an adapter folder must not
import peft (which brings torch); tests/unit/train/test_peft_methods.py ties them to the installed peft.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from bioqa.errors import did_you_mean, option, raise_problems, short
from bioqa.settings import AdapterArguments

# peft_type values (adapter_config.json) of the prompt-learning methods: virtual tokens, no weight changes
PROMPT_LEARNING = frozenset(
    {"PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "CPT", "CARTRIDGE", "ADAPTION_PROMPT"}
)
# weight adapters whose peft layers cannot fold into the base weights, with the reason peft gives
UNMERGEABLE = {
    "XLORA": "X-LoRA mixes several LoRA experts per token with a learnt classifier",
    "POLY": "Polytropon mixes its adapters per task id",
    "SHADOW": "its adaptation depends on the input",
    "LILY": "peft implements no merge for Lily",
}
# LoRA initialisations that change the base weights: the adapter is saved converted to a plain LoRA adapter
# (peft's path_initial_model_for_weight_conversion), which applies to the unchanged base
CONVERTED_INITS = ("pissa", "olora")
# LoRA initialisations that need a pass over data or a quantised base this toolkit does not run first
UNSUPPORTED_INITS = ("eva", "corda", "loftq", "lora_ga")
# settings of this toolkit that are fields of every method's config, and the LoRA-only ones
CARRIED = {"lora_target_modules": "target_modules", "modules_to_save": "modules_to_save"}
LORA_ONLY = {
    "lora_r": "r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "use_rslora": "use_rslora",
    "use_dora": "use_dora",
}


def method_configs() -> dict[str, type]:
    """{method name as the user writes it (lower case): peft's config class} for every method peft has."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return {str(kind.value).lower(): cls for kind, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}


def peft_config(adapter: AdapterArguments) -> Any:
    """peft's config for the recipe's adapter; one InputError naming every problem."""
    config, problems = built(adapter)
    raise_problems(problems)
    return config


def peft_problems(adapter: AdapterArguments) -> list[str]:
    """Every problem of the adapter settings, found without loading weights."""
    return built(adapter)[1]


def built(adapter: AdapterArguments) -> tuple[Any, list[str]]:
    configs, method = method_configs(), adapter.peft_method.lower()
    if method not in configs:
        close = did_you_mean(method, configs)
        return None, [
            f"{option('peft_method')} {adapter.peft_method} is not a peft method"
            + (f" ({close})" if close else "")
            + f"; choose one of {' '.join(sorted(k for k in configs if k.upper() not in PROMPT_LEARNING))}"
        ]
    if method.upper() in PROMPT_LEARNING:
        return None, [
            f"{option('peft_method')} {method} is a prompt-learning method: it adds virtual tokens, not weights, "
            "which this toolkit's generation and merge do not handle; choose a weight adapter such as lora or ia3"
        ]
    cls, options = configs[method], dict(adapter.peft_options or {})
    problems = option_problems(cls, method, options) + lora_only_problems(adapter, method, cls)
    if problems:
        return None, problems
    kwargs = {**settings_for(adapter, cls, method), **options, "task_type": "CAUSAL_LM"}
    try:
        return cls(**kwargs), []
    except (ValueError, TypeError) as exc:  # peft checks its own fields in __post_init__
        return None, [
            f"peft's {cls.__name__} refused the settings: {short(str(exc), 240)}; check {option('peft_options')}"
        ]


def fields_of(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def option_problems(cls: type, method: str, options: dict[str, Any]) -> list[str]:
    """peft_options keys that are no field of the method's config, or that one of this toolkit's settings sets."""
    fields, problems = fields_of(cls), []
    own = {**CARRIED, **(LORA_ONLY if method == "lora" else {})}
    for key in options:
        if key not in fields:
            close = did_you_mean(key, fields)
            problems.append(
                f"{option('peft_options')} key {key!r} is no field of peft's {cls.__name__}"
                + (f" ({close})" if close else "")
                + "; see peft's documentation of the method for its fields"
            )
        elif key == "task_type":
            problems.append(f"{option('peft_options')} sets task_type, which is always CAUSAL_LM here; drop it")
        elif key in own.values():
            setting = next(name for name, field in own.items() if field == key)
            problems.append(f"{option('peft_options')} sets {key}, which {option(setting)} sets; use that instead")
    init = options.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(UNSUPPORTED_INITS):
        problems.append(
            f"{option('peft_options')} init_lora_weights {init} needs a pass over data or a quantised base before "
            f"training, which this toolkit does not run; choose true, gaussian, {' or '.join(CONVERTED_INITS)}"
        )
    return problems


def lora_only_problems(adapter: AdapterArguments, method: str, cls: type) -> list[str]:
    """Settings changed from their defaults that the method's config has no field for (the LoRA settings for
    another method), where they would be silently ignored."""
    defaults, fields = {f.name: f.default for f in dataclasses.fields(AdapterArguments)}, fields_of(cls)
    defaults["lora_target_modules"] = ["all-linear"]  # a default_factory's value
    problems = [
        f"{option(name)} has no counterpart in peft's {cls.__name__} ({method} has no {field}); drop it"
        for name, field in CARRIED.items()
        if getattr(adapter, name) != defaults[name] and field not in fields
    ]
    for name, field in LORA_ONLY.items() if method != "lora" else ():
        if getattr(adapter, name) == defaults[name]:
            continue
        own = next((f for f in (field, field.removeprefix("lora_")) if f in fields), None)  # loha's alpha
        problems.append(
            f"{option(name)} is a LoRA setting and {option('peft_method')} is {method}; "
            + (
                f"give {method}'s own field in {option('peft_options')} instead: "
                f"'{json.dumps({own: getattr(adapter, name)})}'"
                if own
                else f"{method} has no {field}, drop it"
            )
        )
    return problems


def settings_for(adapter: AdapterArguments, cls: type, method: str) -> dict[str, Any]:
    """The config fields this toolkit's settings give: targets and fully trained modules for every method that
    has them, the lora_* settings for LoRA."""
    fields = fields_of(cls)
    names = {**CARRIED, **(LORA_ONLY if method == "lora" else {})}
    kwargs = {field: getattr(adapter, name) for name, field in names.items() if field in fields}
    if kwargs.get("target_modules") == ["all-linear"]:
        kwargs["target_modules"] = "all-linear"  # peft's keyword for every linear layer but the output head
    return kwargs


def converted_init(config: Any) -> bool:
    """Whether training with this config changes the base weights (PiSSA, OLoRA), so the saved adapter must be
    converted to one that applies to the unchanged base."""
    init = getattr(config, "init_lora_weights", None)
    return isinstance(init, str) and init.lower().startswith(CONVERTED_INITS)


def merge_refusal(peft_type: str | None) -> str | None:
    """Why an adapter of this kind (adapter_config.json's peft_type) cannot be merged into its base, else None."""
    kind = str(peft_type)
    if kind in PROMPT_LEARNING:
        return (
            f"a {kind} adapter is prompt learning: it adds virtual tokens, not weight changes, so there is "
            "nothing to merge into the base; load base + adapter with peft's PeftModel instead"
        )
    if kind in UNMERGEABLE:
        return f"peft cannot merge a {kind} adapter ({UNMERGEABLE[kind]}); load base + adapter with peft instead"
    return None


def unconverted_init(config: dict[str, Any]) -> str | None:
    """The PiSSA / OLoRA initialisation an adapter was saved with unconverted (a checkpoint-* folder: its LoRA
    pairs apply to the base as that initialisation changed it, which peft recomputes on loading), else None."""
    init = config.get("init_lora_weights")
    return init if isinstance(init, str) and init.lower().startswith(CONVERTED_INITS) else None
