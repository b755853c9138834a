"""Conversations as data: TRL's `messages`, ShareGPT's `conversations` and Alpaca's instruction records.

A conversation is one example: its last user turn is the question, its last assistant turn the answer (the
reference an evaluation scores, generated from everything before it), its earlier turns the example's history
(trained on too with assistant_loss all), its own system turn its system prompt. A conversation is never cut
apart: ids, splits and the leak check work per conversation. Alpaca records are single-turn: their fields
map onto question (instruction), context (input) and answer (output).
"""

from __future__ import annotations

from typing import Any

from bioqa.errors import InputError, option, shown

RECORD_FORMATS = ("auto", "fields", "messages", "sharegpt", "alpaca")
CONVERSATION_FORMATS = ("messages", "sharegpt")
ALPACA_FIELDS = {"question": "instruction", "context": "input", "answer": "output"}
# ShareGPT's speakers, as the datasets in that format write them, and the roles they are
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
KEYS = {"messages": ("messages", "role", "content"), "sharegpt": ("conversations", "from", "value")}


def detected_format(record: dict[str, Any]) -> tuple[str, str]:
    """(record format, why) for a record under record_format auto."""
    for fmt in CONVERSATION_FORMATS:
        if isinstance(record.get(KEYS[fmt][0]), list):
            return fmt, f"the records have a {KEYS[fmt][0]!r} list"
    if "instruction" in record and "output" in record:
        return "alpaca", "the records have 'instruction' and 'output'"
    return "fields", "the records have none of 'messages', 'conversations', 'instruction' + 'output'"


def resolve_format(asked: str, first: dict[str, Any], source: str) -> tuple[str, str]:
    """The record format of records whose first is `first`: `asked`, checked against it, or detected (auto)."""
    found, why = detected_format(first)
    if asked == "auto":
        return found, f"detected: {why}"
    expected = {
        "messages": "a 'messages' list",
        "sharegpt": "a 'conversations' list",
        "alpaca": "'instruction' and 'output' fields",
    }
    if asked in expected and found != asked:
        raise InputError(
            f"{option('record_format')} {asked}: {source} record 1 has no {expected[asked]} (its fields: "
            f"{', '.join(map(str, first)) or 'none'}); use {option('record_format')} {found} or auto"
        )
    return asked, f"{option('record_format')} {asked}"


def records_format(
    firsts: dict[str, tuple[dict[str, Any], str]], asked: str, label_field: str | None
) -> tuple[str, str]:
    """The record format every split's records share, and why (detected, or as asked and checked); `firsts`:
    {split: (its first record, where it comes from)}."""
    found = {name: resolve_format(asked, first, source) for name, (first, source) in firsts.items()}
    if len({fmt for fmt, _ in found.values()}) > 1:
        shown_formats = ", ".join(f"{name} {fmt}" for name, (fmt, _) in found.items())
        raise InputError(f"the splits hold records of different formats ({shown_formats}); give one format")
    record_format, why = next(iter(found.values()), ("fields", ""))
    if record_format in CONVERSATION_FORMATS and label_field:
        raise InputError(
            f"{option('label_field')} reads a label field; {record_format} records have none ({why}); drop "
            f"{option('label_field')}, or give {option('record_format')} fields"
        )
    return record_format, why


def conversation(record: dict[str, Any], fmt: str, where: str) -> tuple[str | None, list[dict[str, str]]]:
    """(system prompt or None, turns alternating user and assistant, the last the assistant's) of one record."""
    key, role_key, text_key = KEYS[fmt]
    raw = record.get(key)
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{where} {key!r} is {shown(raw)}, not a list of turns; fix the record")
    turns = [_turn(turn, n, fmt, role_key, text_key, where) for n, turn in enumerate(raw, 1)]
    system = turns.pop(0)["content"] if turns[0]["role"] == "system" else None
    offset = 2 if system is not None else 1  # the record's own numbering of the turns
    for index, turn in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if turn["role"] != expected:
            after = f"after a {turns[index - 1]['role']} turn" if index else "first"
            raise InputError(
                f"{where} turn {index + offset} is a {turn['role']} turn {after}; a conversation is an optional "
                "system turn, then user and assistant turns in turn, starting with the user's: fix the record"
            )
    if not turns or turns[-1]["role"] != "assistant":
        raise InputError(
            f"{where} has no assistant turn after its last user turn: there is no answer to learn or score; end "
            "each conversation with the assistant's answer"
        )
    return system, turns


def _turn(turn: Any, n: int, fmt: str, role_key: str, text_key: str, where: str) -> dict[str, str]:
    if not isinstance(turn, dict) or not isinstance(turn.get(role_key), str) or not isinstance(turn.get(text_key), str):
        raise InputError(
            f"{where} turn {n} is {shown(turn)}, not {{{role_key!r}: <role>, {text_key!r}: <text>}}; fix the record"
        )
    role = turn[role_key].strip().lower()
    role = SHAREGPT_ROLES.get(role, role) if fmt == "sharegpt" else role
    if role not in ("system", "user", "assistant"):
        known = "human, gpt, system" if fmt == "sharegpt" else "system, user, assistant"
        raise InputError(f"{where} turn {n} has the {role_key} {turn[role_key]!r}; the known ones are {known}")
    if role == "system" and n > 1:
        raise InputError(f"{where} turn {n} is a system turn; only a conversation's first turn may be: fix the record")
    text = turn[text_key].strip()
    if not text:
        raise InputError(f"{where} turn {n} ({role}) is empty; fix or remove it")
    return {"role": role, "content": text}


def conversation_example(record: dict[str, Any], fmt: str, example_id: str, where: str) -> dict[str, Any]:
    """The example (bioqa.data.splits.Example) of one conversation record."""
    system, turns = conversation(record, fmt, where)
    example: dict[str, Any] = {
        "id": example_id,
        "question": turns[-2]["content"],
        "context": "",
        "answer": turns[-1]["content"],
        "history": turns[:-2],  # present, if empty, on every conversation: its turns are rendered verbatim
    }
    if system is not None:
        example["system"] = system
    return example


def user_turns(example: dict[str, Any]) -> list[str]:
    """What the user says in an example, every turn of a conversation: what the leak check compares."""
    return [turn["content"] for turn in example.get("history", ()) if turn["role"] == "user"] + [example["question"]]
