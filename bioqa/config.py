"""Settings from typed dataclasses and YAML: `HfArgumentParser` plus a config file (`--config run.yaml`).

A YAML key is exactly a setting's name (a command-line flag without its dashes); the file is read as if its
flags came first, so flags on the command line override it. Unknown keys and ill-typed values are errors that
name the file. `bioqa.recipe.Recipe.settings()` turns the parsed settings back into the YAML written beside
every output, and `Recipe.from_yaml` reads one through this parser.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from argparse import Action, ArgumentTypeError
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bioqa import compat
from bioqa.errors import (
    InputError,
    did_you_mean,
    help_hint,
    option,
    raise_problems,
    short,
    shown,
    spelled_for_the_caller,
)
from bioqa.io.files import path_kind, read_text, wrong_kind
from bioqa.settings import answer_settings


def _parser_class():
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        """HfArgumentParser whose errors raise InputError instead of printing usage and exiting."""

        def error(self, message: str):
            raise InputError(f"{spelled_for_the_caller(message)}; {help_hint()}")

        def add_argument(self, *names, **kwargs):
            # HfArgumentParser hands a field's whole metadata to argparse; a setting's role is not argparse's
            kwargs.pop("role", None)
            return super().add_argument(*names, **kwargs)

    return Parser


def build_parser(dataclass_types: Sequence[type], description: str, prog: str | None = None):
    parser = _parser_class()(dataclass_types, description=description, prog=prog)
    # HfArgumentParser gives dict options (liger_kernel_config) dict(), which no text passes; they take a JSON
    # object instead, which is also how a YAML mapping reaches them
    for action in compat.parser_actions(parser):
        if getattr(action.type, "__origin__", action.type) is dict:
            action.type = json_object
    parser.add_argument(
        "--config",
        metavar="RUN.yaml",
        default=None,
        help="YAML file of options (keys are these flag names); flags given on the command line override it",
    )
    return parser


def json_object(text: str) -> dict:
    """A dict option's value from its text: a JSON object such as '{"rope": false}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentTypeError(f"{short(text, 80)} is not a JSON object ({exc})") from None
    if not isinstance(value, dict):
        raise ArgumentTypeError(f"{short(text, 80)} is not a JSON object such as '{{\"key\": true}}'")
    return value


def parse_arguments(parser, argv: Sequence[str] | None) -> tuple:
    """Parse `argv` (default sys.argv[1:]) with `--config` YAML underneath; return the dataclasses."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = _config_path(argv)
    file_argv = _yaml_to_argv(config, parser) if config else []
    if file_argv:
        try:
            parser.parse_known_args(file_argv)
        except InputError as exc:
            raise InputError(f"{config}: {exc}") from None
    try:
        *objects, _config, remaining = parser.parse_args_into_dataclasses(
            args=file_argv + argv, return_remaining_strings=True
        )
    except ValueError as exc:  # a dataclass's own validation (e.g. TrainingArguments.__post_init__)
        raise InputError(f"{spelled_for_the_caller(short(str(exc), 500))}; {help_hint()}") from None
    if remaining:
        flag = next((t for t in remaining if t.startswith("--")), remaining[0])
        raise InputError(f"unrecognized arguments: {' '.join(remaining)}; {_suggest(flag.lstrip('-'), parser)}")
    raise_problems(number_problems(objects, config))
    return tuple(objects)


# Counts, sizes and seeds fit a C int: past it torch, numpy and tokenizers fail deep inside (one with a C++ stack).
LARGEST_COUNT = 2**31 - 1


def number_problems(objects: Sequence[Any], config: Path | None) -> list[str]:
    """Every number option that is not a number: a NaN or infinite float, a count beyond LARGEST_COUNT (from the
    command line or from the YAML file, whose `.nan` and `.inf` are floats too); all of them, at once."""
    where = f" (in {config} or on the command line)" if config else ""
    problems = []
    for obj in objects:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            values = value if isinstance(value, (list, tuple)) else [value]
            shown_value = " ".join(short(str(v), 40) for v in values)
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                problems.append(f"{option(f.name)} must be a finite number, got {shown_value}{where}")
            elif any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > LARGEST_COUNT for v in values):
                problems.append(f"{option(f.name)} {shown_value} is out of range (at most {LARGEST_COUNT}){where}")
    return problems


def _options(parser) -> dict[str, Action]:
    return {a.dest: a for a in compat.parser_actions(parser) if a.option_strings and a.dest not in ("help", "config")}


def _suggest(name: str, parser) -> str:
    return did_you_mean(name.split("=")[0], _options(parser)) or f"{help_hint()} for the options"


def _config_path(argv: list[str]) -> Path | None:
    found = [argv[i + 1] for i, token in enumerate(argv[:-1]) if token == "--config"]
    found += [token.split("=", 1)[1] for token in argv if token.startswith("--config=")]
    if len(found) > 1:
        raise InputError(
            f"{option('config')} given {len(found)} times ({', '.join(found)}); give one file (put the options of "
            "both in it), and override single options with flags"
        )
    return Path(found[0]) if found else None


def _yaml_to_argv(path: Path, parser) -> list[str]:
    import yaml

    if path_kind(path) not in ("a file", "a pipe"):
        raise InputError(f"{option('config')} {wrong_kind(path, 'a YAML file')}; check the {option('config')} path")
    try:
        data = load_yaml(read_text(path, "the config file"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML ({short(str(exc), 200)}); fix the file") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a mapping of option: value, not {type(data).__name__}")
    options = _options(parser)
    argv: list[str] = []
    for key, value in data.items():
        if key not in options:
            raise InputError(f"{path}: unknown key {short(repr(key), 60)}; {_suggest(str(key), parser)}")
        _check_yaml_value(path, key, options[key], value)
        argv += flag_tokens(key, value)
    return argv


YAML_MAX_VALUES = 10_000  # far above any config; a few nested aliases ("billion laughs") expand beyond it


def load_yaml(text: str) -> Any:
    """YAML as yaml.safe_load reads it, but a key given twice, or aliases expanding to more than
    YAML_MAX_VALUES values, are errors instead of last-one-wins and a huge document."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # a config's keys are flags: nothing to merge into
                    raise yaml.YAMLError(
                        f"line {key_node.start_mark.line + 1} is a YAML merge key (<<:), which a config file does "
                        "not use (its keys are the options themselves); write the options out"
                    )
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    break  # an unhashable key: SafeLoader's own error names it
                if key in seen:
                    raise yaml.YAMLError(
                        f"key {short(repr(key), 60)} is given twice (again on line "
                        f"{key_node.start_mark.line + 1}); keep one"
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        if _expanded_size(node, YAML_MAX_VALUES) > YAML_MAX_VALUES:
            raise yaml.YAMLError(f"its aliases expand to more than {YAML_MAX_VALUES} values; write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, limit: int) -> int:
    """Values in the document with every alias expanded, counted up to just past `limit`."""
    count, stack = 0, [node]
    while stack and count <= limit:
        current = stack.pop()
        count += 1
        if isinstance(current.value, list):
            stack += [part for item in current.value for part in (item if isinstance(item, tuple) else (item,))]
    return count


def _check_yaml_value(path: Path, key: str, action: Action, value: Any) -> None:
    """A YAML value the option cannot take, named with the file, the key and the expected type."""
    many = action.nargs in ("+", "*")
    expected = (
        f"one of {', '.join(map(str, action.choices))}"
        if action.choices
        else f"{'a list of ' if many else 'one '}{getattr(action.type, '__name__', 'text')} value{'s' if many else ''}"
    )
    if isinstance(value, (list, tuple)) and len(value) > 1 and not many:  # [x] is x (report_to: [tensorboard])
        raise InputError(f"{path}: key {key!r} is a list ({shown(value)}), but it takes {expected}; {help_hint()}")
    values = value if isinstance(value, (list, tuple)) else [value]
    boolean = " (YAML reads unquoted yes, no, on, off, true, false as booleans: quote the word)"
    if action.choices and value is not None and str(value) not in map(str, action.choices):
        hint = boolean if isinstance(value, bool) else ""
        raise InputError(f"{path}: key {key!r} is {shown(value)}{hint}, but it takes {expected}; {help_hint()}")
    if action.type is str and any(isinstance(v, bool) for v in values):  # labels: [yes, no] would be True, False
        raise InputError(f"{path}: key {key!r} is {shown(value)}{boolean}, but it takes {expected}; {help_hint()}")


def flag_tokens(key: str, value: Any) -> list[str]:
    """The command-line tokens that set option `key` to a YAML value (none for null)."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [f"--{key}", "true" if value else "false"]
    if isinstance(value, dict):
        return [f"--{key}", json.dumps(value)]
    if isinstance(value, (list, tuple)):  # an empty list is no values: the parser refuses it, never the default
        return [f"--{key}", *map(str, value)]
    return [f"--{key}", str(value)]


def answer_flags(recipe: Path) -> list[str]:
    """The flags of a recipe YAML that shape the answers (roles example and generation), so that a zero-shot run
    (`--do_predict` alone) answers the way the recipe's fine-tuned model is asked to."""
    return recipe_flags(recipe, set(answer_settings()))


def recipe_flags(recipe: Path, names: set[str]) -> list[str]:
    """The flags that set the settings `names` as a recipe YAML (or a run's run_config.yaml) sets them."""
    settings = load_yaml(read_text(Path(recipe), "the recipe"))
    if not isinstance(settings, dict):
        raise InputError(f"{recipe} holds a YAML {type(settings).__name__}, not a mapping of settings; give a recipe")
    return [token for key, value in settings.items() if key in names for token in flag_tokens(key, value)]


def value_problems(section: type, changes: dict[str, Any]) -> list[str]:
    """Values a section's fields cannot take, for settings given from Python (the parser checks the command's):
    a value of another type, or not one of the field's choices; every one of them at once."""
    import typing

    hints = typing.get_type_hints(section)
    fields = {f.name: f for f in dataclasses.fields(section)}
    problems = []
    for name, value in changes.items():
        choices = fields[name].metadata.get("choices")
        if choices and value is not None and (not isinstance(value, str) or value not in map(str, choices)):
            problems.append(f"{option(name)} is {shown(value)}, but it takes one of {', '.join(map(str, choices))}")
        elif not _fits(value, hints[name]):
            problems.append(
                f"{option(name)} is {shown(value)} ({type(value).__name__}), but it takes {_kind(hints[name])}"
            )
    return problems


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` is of the annotated type (what HfArgumentParser would have made of its text); types this
    does not know pass."""
    import enum
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_fits(item, args[0]) for item in value) if args else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint)
    return True


def _kind(hint: Any) -> str:
    """A type annotation as a reader would say it: `int | None` is "int or null", `list[str]` "a list of str"."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(arg) for arg in args)
    if hint is type(None):
        return "null"
    if origin in (list, tuple):
        return f"a list of {_kind(args[0])}" if args else "a list"
    return getattr(hint, "__name__", str(hint))
