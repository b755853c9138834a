"""A recipe: every setting of a training run in one typed value, the sections of bioqa/settings.py plus
transformers' TrainingArguments with this toolkit's defaults. `load_models.py` parses its flags into one,
writes it beside every output as run_config.yaml, and a resume compares against it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import transformers
from transformers.training_args import IntervalStrategy, SaveStrategy

from bioqa.config import build_parser, number_problems, parse_arguments, value_problems
from bioqa.errors import InputError, did_you_mean, help_hint, raise_problems, short, spelled_for_the_caller
from bioqa.io.files import write_yaml_atomic
from bioqa.roles import Role
from bioqa.settings import (
    OWN_SECTIONS,
    AdapterArguments,
    DataArguments,
    EvaluationArguments,
    GenerationArguments,
    ModelArguments,
    OutputArguments,
    PromptArguments,
)


def _default(name: str, value: Any, why: str):
    """A TrainingArguments field with this toolkit's default; the help says what changed and why."""
    original = transformers.TrainingArguments.__dataclass_fields__[name]
    help_text = f"{original.metadata.get('help', '')} [here default {value!r}: {why}]"
    return field(default=value, metadata={**original.metadata, "help": help_text})


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    output_dir: str | None = _default("output_dir", "outputs/bioqa-lora", "one folder per run")
    learning_rate: float = _default("learning_rate", 2e-4, "a LoRA learning rate, not a full fine-tuning one")
    warmup_steps: float = _default("warmup_steps", 0.03, "a fraction of the steps")
    logging_steps: float = _default("logging_steps", 10, "see the loss early on short runs")
    eval_strategy: IntervalStrategy | str = _default("eval_strategy", "epoch", "generation metrics every epoch")
    save_strategy: SaveStrategy | str = _default("save_strategy", "epoch", "a checkpoint per evaluation")
    train_sampling_strategy: str = _default("train_sampling_strategy", "group_by_length", "less padding, faster steps")
    report_to: None | str | list[str] = _default("report_to", "tensorboard", "curves in <output_dir>/runs")
    seeds: list[int] | None = field(
        default=None,
        metadata={
            "role": Role.RUN,
            "help": "Train the recipe once per seed (e.g. 1 2 3), each run in output_dir/seed-N, with seeds.json and "
            "seeds.md beside them: every seed's scores (test with do_predict, else the final validation), their "
            "mean and standard deviation. bioqa-compare takes the folder as one side of a comparison over seeds.",
        },
    )


class Recipe(NamedTuple):
    """Every setting of a training run, by section; the commands' flags, `--config` YAML and run_config.yaml
    are these fields. The toolkit's sections are frozen: change a recipe with `replace`, which returns a new one.

        >>> recipe = bioqa.Recipe.from_yaml("configs/demo-smollm2-cpu.yaml", output_dir="outputs/run1")
        >>> recipe.adapter.lora_r, recipe.replace(lora_r=16).adapter.lora_r
        >>> print(bioqa.Recipe.help())   # every setting with its help, as --help shows them
    """

    model: ModelArguments
    data: DataArguments
    prompt: PromptArguments
    adapter: AdapterArguments
    generation: GenerationArguments
    evaluation: EvaluationArguments
    output: OutputArguments
    training: TrainingArguments

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> Recipe:
        """The recipe a config YAML describes (as `load_models.py --config path` reads it), with `overrides`."""
        return parse_recipe(["--config", str(path)]).replace(**overrides)

    @classmethod
    def defaults(cls, **settings: Any) -> Recipe:
        """The toolkit's default recipe with `settings` changed (`Recipe.defaults(train_file="qa.jsonl")`)."""
        return parse_recipe([]).replace(**settings)

    @classmethod
    def help(cls) -> str:
        """Every setting with its type, default and help text: what `load_models.py --help` prints."""
        return build_parser(SECTIONS, description=DESCRIPTION, prog="load_models.py").format_help()

    def settings(self) -> dict[str, Any]:
        """Every setting as a plain YAML-able value, by name (what run_config.yaml holds)."""
        return config_dict(*self)

    def to_yaml(self, path: str | Path) -> None:
        """Write the settings as YAML that `--config` reads back."""
        write_yaml_atomic(Path(path), self.settings())

    def replace(self, **changes: Any) -> Recipe:
        """A recipe with the named settings changed (`recipe.replace(learning_rate=1e-3, lora_r=8)`), checked as the
        command checks its flags: a name no section has (the close ones named), a value of another type or not
        one of the choices, all at once as one InputError. Training values transformers derives from others
        (`greater_is_better` from `metric_for_best_model`, `eval_steps` from `logging_steps`, ...) follow a change
        of what they derive from, unless they are changed too."""
        if not changes:  # from_yaml and defaults without changes: the parse has checked everything already
            return self
        sections = dict(zip(self._fields, self))
        owner = {f.name: key for key, section in sections.items() for f in dataclasses.fields(section) if f.init}
        unknown = [name for name in changes if name not in owner]
        if unknown:
            hints = {name: did_you_mean(name, owner) for name in unknown}
            shown = "; ".join(f"{name} ({hint})" if hint else name for name, hint in hints.items())
            raise InputError(f"a recipe has no setting {shown}")
        by_section = {key: {n: v for n, v in changes.items() if owner[n] == key} for key in sections}
        raise_problems([p for key, mine in by_section.items() for p in value_problems(type(sections[key]), mine)])
        for key, mine in by_section.items():
            if mine:
                sections[key] = _replaced(sections[key], mine)
        recipe = Recipe(**sections)
        raise_problems(number_problems(list(recipe), None))
        return recipe


# What transformers 5's TrainingArguments.__post_init__ fills in from other fields (a value equal to what it would
# derive was derived), and the deprecated names it mirrors from the new ones: a copy that changes the inputs must
# let it derive them again, or a recipe keeps, say, greater_is_better=False from metric "loss" for eval_rougeL.
DERIVED = {
    "do_eval": (("eval_strategy",), lambda t: t.do_eval and t.eval_strategy != "no"),
    "eval_steps": (("eval_strategy", "logging_steps"), lambda t: t.eval_steps == t.logging_steps),
    "metric_for_best_model": (
        ("load_best_model_at_end", "lr_scheduler_type"),
        lambda t: t.metric_for_best_model == "loss",
    ),
    "greater_is_better": (
        ("metric_for_best_model", "load_best_model_at_end", "lr_scheduler_type"),
        lambda t: (
            t.metric_for_best_model is not None
            and t.greater_is_better == (not t.metric_for_best_model.endswith("loss"))
        ),
    ),
}
ALIASES = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def _replaced(section: Any, changes: dict[str, Any]) -> Any:
    """The section with `changes`; for the training arguments, derived values reset to be derived again, and a
    deprecated name's change made to the name it stands for."""
    if isinstance(section, transformers.TrainingArguments):
        changes = {ALIASES.get(name, name): value for name, value in changes.items()}
        for name, (inputs, was_derived) in DERIVED.items():
            if name not in changes and any(i in changes for i in inputs) and was_derived(section):
                changes[name] = section.__dataclass_fields__[name].default
        changes |= {old: changes[new] for old, new in ALIASES.items() if new in changes}
    try:
        return dataclasses.replace(section, **changes)
    except ValueError as exc:  # TrainingArguments' own checks (e.g. load_best_model_at_end without matching strategies)
        raise InputError(f"{spelled_for_the_caller(short(str(exc), 500))}; {help_hint()}") from None


def config_dict(*objects: Any) -> dict[str, Any]:
    """Every option of the parsed dataclasses, as plain YAML-able values (reusable as --config)."""
    result: dict[str, Any] = {}
    for obj in objects:
        for setting in dataclasses.fields(obj):
            if setting.init and not setting.name.startswith("_"):
                result[setting.name] = _plain(getattr(obj, setting.name))
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):  # TrainingArguments' strategies and scheduler types
        return _plain(value.value)
    if dataclasses.is_dataclass(value):  # e.g. TrainingArguments.accelerator_config
        return _plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):  # empty: a default such as TrainingArguments' debug, written as null
        return [_plain(v) for v in value] or None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# The section types in the order of Recipe's fields: what the command's parser is built from.
SECTIONS = (*OWN_SECTIONS, TrainingArguments)

DESCRIPTION = "Fine-tune a causal language model with LoRA on biomedical question answering, and predict."


def parse_recipe(argv: Sequence[str] | None) -> Recipe:
    """The recipe of command-line arguments (default: this process's), with `--config` YAML underneath."""
    parser = build_parser(SECTIONS, description=DESCRIPTION)
    # Parsing sets up the devices of TrainingArguments before the device setting is applied (a run replaces
    # them); under torchrun on a CPU that first set-up warns, wrongly, that DDP is off.
    quiet = logging.getLogger("transformers.training_args")
    previous = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return Recipe(*parse_arguments(parser, argv))
    finally:
        quiet.setLevel(previous)
