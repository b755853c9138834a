"""Question-answer data: records (`bioqa.data.sources`: files or hub datasets) -> rows {id, question, context,
answer}, split and checked.

Fields are named by dotted paths (`context.contexts` for the PubMedQA hub layout); a list value is
joined into one text. Rows with an empty answer are dropped and counted; a question found in more
than one split is reported as a leak.

Questions with a short answer (yes/no/maybe, or the correct option of a multiple-choice question) also
get a `label`, checked against the label set; a multiple-choice question's lettered options are added
to its question text, so every prompt built from it shows them. An example's `answer` is the reference its
answers are scored against, as the data gives it (the label, when the target is the label alone); its `target` is
what the model learns to write (`labels.target_text`): the answer, the label, or the label then the answer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from bioqa.data.conversations import (
    ALPACA_FIELDS,
    CONVERSATION_FORMATS,
    conversation_example,
    records_format,
    user_turns,
)
from bioqa.data.labels import (
    as_options,
    check_label_set,
    fold,
    normalise_label,
    option_letters,
    question_with_options,
    target_text,
)
from bioqa.data.sources import Records, raw_splits
from bioqa.errors import InputError, option, shown

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class FieldMap:
    question: str = "question"
    answer: str = "answer"
    context: str | None = None  # None: use a "context" field when the data has one
    id: str = "id"
    separator: str = "\n"  # joins list-valued fields (e.g. PubMedQA's list of abstract sections)
    label: str | None = None  # the short answer: yes/no/maybe, or a multiple-choice question's correct option
    options: tuple[str, ...] = ()  # one field holding the options (list or dict), or one field per option
    target: str = "answer"  # what `answer` holds: labels.TARGETS


class Example(TypedDict):
    """One question-answer pair as every later layer sees it, whatever the source file called its fields."""

    id: str
    question: str
    context: str  # "" when the example has none
    answer: str  # the reference of the text metrics, as the data gives it (with --target label: the label)
    target: NotRequired[str]  # what the model learns to write, when it is not the answer (labels.target_text)
    label: NotRequired[str]  # one of the label set, with --label_field
    options: NotRequired[dict[str, str]]  # letter -> option text, with --options_field
    history: NotRequired[list[dict[str, str]]]  # a conversation's earlier turns ({role, content}; [] if none)
    system: NotRequired[str]  # a conversation's own system prompt


@dataclass
class Splits:
    """The examples of each split, and what loading them found."""

    examples: dict[str, list[Example]]
    dropped_empty: dict[str, int] = field(default_factory=dict)
    leaked_questions: int = 0
    sources: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None  # the label set, with --label_field
    labels_from: str = ""  # where the label set came from, for the log
    record_format: str = "fields"  # bioqa.data.conversations.RECORD_FORMATS, and why, for the log
    record_format_from: str = ""

    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.examples.items()}

    def label_counts(self) -> dict[str, dict[str, int]]:
        """How often each label occurs in each split (empty without labels)."""
        if not self.labels:
            return {}
        return {
            name: {label: sum(row.get("label") == label for row in rows) for label in self.labels}
            for name, rows in self.examples.items()
        }


# ----------------------------------------------------------------------------- field mapping


def get_field(record: dict, path: str) -> Any:
    """`record["a"]["b"]` for the dotted path "a.b"; KeyError if any part is missing."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


def as_text(value: Any, separator: str) -> str:
    """A text field's value: a string, or a list of strings joined by `separator`; TypeError for anything else."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return separator.join(value).strip()
    raise TypeError(shown(value))


def _field_text(record: dict, path: str, separator: str, where: str) -> str:
    try:
        return as_text(get_field(record, path), separator)
    except TypeError as exc:
        raise InputError(
            f"{where} field {path!r} is {exc.args[0]}, not a text (or a list of texts); fix the data or "
            "choose another field"
        ) from None


def _example_id(record: dict, path: str, split: str, index: int, where: str) -> str:
    value = _optional_field(record, path)
    if value is None or value == "":
        return f"{split}-{index}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(
            f"{where} field {path!r} is {shown(value)}, not a text or a whole "
            f"number; give each example a plain id, or choose another {option('id_field')}"
        )
    return str(value)


def _required_fields(fields: FieldMap) -> list[tuple[str, str]]:
    """(field, the option naming it) for every field each record must have."""
    required = [(fields.question, "question_field")]
    if fields.target != "label":  # a label alone is the whole target: no answer text needed
        required.append((fields.answer, "answer_field"))
    if fields.context:
        required.append((fields.context, "context_field"))
    if fields.label:
        required.append((fields.label, "label_field"))
    return required + [(name, "options_field") for name in fields.options]


def _check_fields(records: Records, fields: FieldMap, source: str) -> str | None:
    """Fail early, naming the columns that exist, if a required field is missing; resolve context."""
    first = records[0]
    for name, setting in _required_fields(fields):
        try:
            get_field(first, name)
        except KeyError:
            why, fix = "", f"set {option(setting)}"
            if fields.target == "label_then_answer" and setting == "answer_field":
                why = f" ({option('target')} label_then_answer writes it after the label)"
                fix = f"set {option('answer_field')}, or use {option('target')} label"
            raise InputError(
                f"{source} has no field {name!r}{why}; its fields are {', '.join(map(str, first))}; {fix}"
            ) from None
    if fields.context:
        return fields.context
    return "context" if "context" in first else None


def _optional_field(record: dict, path: str | None) -> Any:
    try:
        return get_field(record, path) if path else None
    except KeyError:
        return None


def record_options(record: dict, fields: FieldMap, where: str) -> dict[str, str] | None:
    """A multiple-choice record's options, lettered (None without --options_field)."""
    if not fields.options:
        return None
    try:
        values = [get_field(record, name) for name in fields.options]
        return as_options(values[0] if len(values) == 1 else values)
    except KeyError as missing:
        raise InputError(f"{where} has no options field {missing.args[0]!r}; fix the record") from None
    except ValueError as exc:
        raise InputError(f"{where} {exc}; fix the record, or check {option('options_field')}") from None


def _record_label(record: dict, fields: FieldMap, labels: tuple[str, ...], options: dict | None, where: str) -> str:
    raw = _optional_field(record, fields.label)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InputError(f"{where} has no label (field {fields.label!r}); fix the record or remove it")
    try:
        return normalise_label(raw, labels, options)
    except ValueError:
        fix = "fix the record" if options else f"fix the record, or add it to {option('labels')}"
        raise InputError(f"{where} label {shown(raw)} is not one of the labels {', '.join(labels)}; {fix}") from None


def to_examples(
    records: Records,
    fields: FieldMap,
    split: str,
    source: str,
    labels: tuple[str, ...] | None = None,
    record_format: str = "fields",
    numbers: Sequence[int] | None = None,
) -> tuple[list[Example], int]:
    """Map records to {id, question, context, answer} (and label, options; a conversation's history and system
    prompt); return them and how many had no answer. `labels`: the label set, needed with `fields.label`;
    `numbers`: each record's number in its file (a split cut from the training file holds some of its records)."""
    if not records:
        return [], 0
    numbers = numbers or range(1, len(records) + 1)
    if record_format in CONVERSATION_FORMATS:
        seen: dict[str, int] = {}
        wheres = [f"{source} record {number}:" for number in numbers]
        ids = [_unique_id(r, fields, split, i, numbers[i], seen, source) for i, r in enumerate(records)]
        return [conversation_example(r, record_format, ids[i], wheres[i]) for i, r in enumerate(records)], 0
    context_field = _check_fields(records, fields, source)
    examples, empty, seen = [], 0, {}
    for index, record in enumerate(records):
        where = f"{source} record {numbers[index]}:"
        try:
            question = _field_text(record, fields.question, fields.separator, where)
            answer = "" if fields.target == "label" else _field_text(record, fields.answer, fields.separator, where)
        except KeyError as missing:
            raise InputError(f"{where[:-1]} has no field {missing.args[0]!r}; fix the record") from None
        if not answer and fields.target != "label":
            empty += 1
            continue
        example = Example(
            id=_unique_id(record, fields, split, index, numbers[index], seen, source),
            question=question,
            context=_optional_text(record, context_field, fields.separator, where),
            answer=answer,
        )
        examples.append(_with_label(example, record, fields, labels, where))
    return examples, empty


def _unique_id(record: dict, fields: FieldMap, split: str, index: int, number: int, seen: dict, source: str) -> str:
    example_id = _example_id(record, fields.id, split, index, f"{source} record {number}:")
    if example_id in seen:
        raise InputError(
            f"{source} has the id {example_id!r} twice (records {seen[example_id]} and {number}); ids "
            f"must be unique: fix the data, or choose a unique {option('id_field')}"
        )
    seen[example_id] = number
    return example_id


def _with_label(example: Example, record: dict, fields: FieldMap, labels: tuple[str, ...] | None, where: str):
    """The example with its options shown under the question, its label, and the answer its target asks for."""
    if not fields.label:
        return example
    options = record_options(record, fields, where)
    label = _record_label(record, fields, labels or (), options, where)
    example["question"] = question_with_options(example["question"], options)
    example["target"] = target_text(fields.target, label, example["answer"])
    if fields.target == "label":  # no answer text was read: the label is the reference too
        example["answer"] = label
    example["label"] = label
    if options:
        example["options"] = options
    return example


def _optional_text(record: dict, path: str | None, separator: str, where: str) -> str:
    """An optional field (the context): absent or null means none."""
    if path is None or _optional_field(record, path) is None:
        return ""
    return _field_text(record, path, separator, where)


# ----------------------------------------------------------------------------- splits and checks


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise InputError(
            f"{option('split_ratios')} {' '.join(map(str, ratios))} must be three non-negative numbers "
            "(train validation test) that sum to 1, e.g. 0.8 0.1 0.1"
        )
    return tuple(ratios)


def split_examples(examples: list[Example], ratios: Sequence[float], seed: int) -> dict[str, list[Example]]:
    """Shuffle with `seed` and cut into train / validation / test by `ratios`."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_train = round(ratios[0] * len(order))
    n_validation = round(ratios[1] * len(order))
    cuts = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_validation],
        "test": order[n_train + n_validation :],
    }
    return {name: [examples[i] for i in sorted(idx)] for name, idx in cuts.items()}


def _normalised(question: str) -> str:
    return re.sub(r"\s+", " ", question.lower()).strip()


def count_leaked_questions(splits: dict[str, list[Example]]) -> int:
    """How many distinct questions (a conversation's: all its user turns) appear in more than one split."""
    seen: dict[str, set[str]] = {}
    for name, rows in splits.items():
        for row in rows:
            seen.setdefault("\n".join(map(_normalised, user_turns(row))), set()).add(name)
    return sum(1 for names in seen.values() if len(names) > 1)


# ----------------------------------------------------------------------------- putting it together


def _fill_missing_splits(
    records: dict[str, Records], ratios: Sequence[float], seed: int
) -> tuple[dict[str, Records], dict[str, list[int]]]:
    """Cut the splits that were not given from the training records, each with its ratio; and the number in the
    training file of each record of a cut split."""
    missing = [name for name in ("validation", "test") if name not in records]
    numbers = {name: list(range(1, len(rows) + 1)) for name, rows in records.items()}
    if not missing or "train" not in records:
        return records, numbers
    wanted = {name: ratio for name, ratio in zip(SPLITS, ratios) if name in missing}
    cut = split_examples(
        numbers["train"], [1 - sum(wanted.values()), wanted.get("validation", 0.0), wanted.get("test", 0.0)], seed
    )
    numbers = {**numbers, **{name: cut[name] for name in missing}, "train": cut["train"]}
    return {
        **records,
        **{name: [records["train"][n - 1] for n in numbers[name]] for name in [*missing, "train"]},
    }, numbers


def field_map(args, record_format: str = "fields") -> FieldMap:
    """The field mapping `DataArguments` describe (Alpaca records name their own fields)."""
    alpaca = record_format == "alpaca"
    return FieldMap(
        ALPACA_FIELDS["question"] if alpaca else args.question_field,
        ALPACA_FIELDS["answer"] if alpaca else args.answer_field,
        ALPACA_FIELDS["context"] if alpaca else args.context_field,
        args.id_field,
        args.field_separator,
        args.label_field,
        tuple(args.options_field or ()),
        args.target,
    )


def label_set(
    records: dict[str, Records],
    fields: FieldMap,
    declared: Sequence[str] | None,
    sources: dict[str, Any],
    numbers: dict[str, list[int]] | None = None,
) -> tuple[tuple[str, ...], str]:
    """The labels and where they came from: the option letters of a multiple-choice set, `declared`
    (--labels), or the distinct values of the training split (else of the first split given)."""
    for split, rows in records.items():
        if rows:  # a missing field is named, with the fields that exist, before any value is read
            _check_fields(rows, fields, _source_name(sources, split))
    if fields.options:
        counts = [
            len(record_options(record, fields, f"{_source_name(sources, split)} record {number}:"))
            for split, rows in records.items()
            for number, record in zip((numbers or {}).get(split, range(1, len(rows) + 1)), rows, strict=True)
        ]
        letters = option_letters(max(counts, default=2))
        if declared and [str(label).strip().upper() for label in declared] != list(letters):
            raise InputError(
                f"{option('labels')} {' '.join(map(str, declared))}: with {option('options_field')} the labels are "
                f"the option letters {' '.join(letters)}; drop {option('labels')}"
            )
        return letters, f"the option letters ({max(counts, default=2)} options at most)"
    if declared is not None:
        try:
            return check_label_set(declared), option("labels")
        except ValueError as exc:
            raise InputError(f"{option('labels')}: {exc}") from None
    split = next(name for name in SPLITS if records.get(name))
    values = {}
    for record in records[split]:
        raw = _optional_field(record, fields.label)
        text = ("yes" if raw else "no") if isinstance(raw, bool) else str(raw).strip() if raw is not None else ""
        if text:
            values.setdefault(fold(text), text)  # one value per form the reader tells apart
    if len(values) < 2:
        raise InputError(
            f"the {split} split's labels (field {fields.label!r}) take {len(values)} value(s) "
            f"({', '.join(values.values()) or 'none'}); give the label set with {option('labels')}, e.g. yes no maybe"
        )
    return tuple(sorted(values.values())), f"the {split} split's values"


def load_splits(args) -> Splits:
    """Train / validation / test examples as `DataArguments` describe them, checked and counted."""
    ratios = check_ratios(args.split_ratios)
    records, sources = raw_splits(args)
    firsts = {name: (rows[0], _source_name(sources, name)) for name, rows in records.items() if rows}
    record_format, record_format_from = records_format(firsts, args.record_format, args.label_field)
    records, numbers = _fill_missing_splits(records, ratios, args.split_seed)
    fields = field_map(args, record_format)
    labels, labels_from = label_set(records, fields, args.labels, sources, numbers) if fields.label else (None, "")
    limits = {"train": args.max_train_samples, "validation": args.max_eval_samples, "test": args.max_predict_samples}
    examples, dropped = {}, {}
    for name in SPLITS:
        source = _source_name(sources, name)
        rows, dropped[name] = to_examples(
            records.get(name, []), fields, name, source, labels, record_format, numbers.get(name)
        )
        if records.get(name) and not rows:
            raise InputError(
                f"all {dropped[name]} answers in the {name} split are empty (field "
                f"{args.answer_field!r}); check {option('answer_field')}"
            )
        examples[name] = rows[: limits[name]] if limits[name] is not None else rows
    leaked = count_leaked_questions(examples)
    return Splits(examples, dropped, leaked, sources, labels, labels_from, record_format, record_format_from)


def _source_name(sources: dict[str, Any], split: str) -> str:
    if "dataset" in sources:
        return f"dataset {sources['dataset']} ({split})"
    source = sources.get(split) or sources.get("train") or next(iter(sources.values()))
    return source["path"]
