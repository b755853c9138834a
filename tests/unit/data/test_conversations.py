"""Conversations as data: the record formats read from files and from a Hub dataset, the loss on assistant turns
token by token against three chat templates, the generation prompt as the training prefix, the oldest turns cut."""

import json

import pytest

from bioqa.data import splits as splits_module
from bioqa.data.prompts import IGNORE_INDEX, answer_ids, encoded, fit_prompt, prompt_format
from bioqa.data.splits import load_splits
from bioqa.errors import InputError
from bioqa.evaluate.predictions import generation_prompts
from bioqa.settings import DataArguments, PromptArguments
from helpers import ROOT

SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct"
DIALOGUE = [
    {"role": "system", "content": "You are a pharmacist."},
    {"role": "user", "content": "What does metformin treat?"},
    {"role": "assistant", "content": "Type 2 diabetes."},
    {"role": "user", "content": "How does it work?"},
    {"role": "assistant", "content": "It lowers glucose production in the liver."},
    {"role": "user", "content": "A common side effect?"},
    {"role": "assistant", "content": "Stomach upset."},
]
SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt"}


def formats_of(turns: list[dict], index: int) -> dict[str, dict]:
    """One conversation written in each record format (Alpaca: its last exchange, the system prompt dropped)."""
    return {
        "messages": {"id": f"c{index}", "messages": turns},
        "sharegpt": {
            "id": f"c{index}",
            "conversations": [{"from": SHAREGPT[t["role"]], "value": t["content"]} for t in turns],
        },
        "alpaca": {"id": f"c{index}", "instruction": turns[-2]["content"], "input": "", "output": turns[-1]["content"]},
    }


def dialogues(count: int) -> list[list[dict]]:
    return [
        [DIALOGUE[0]] + [{**t, "content": f"{t['content']} ({i})"} for t in DIALOGUE[1 : 3 + 2 * (i % 3)]]
        for i in range(count)
    ]


def data_args(**changes) -> DataArguments:
    return DataArguments(**{"split_ratios": [0.6, 0.2, 0.2], "split_seed": 3, **changes})


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "alpaca"])
def test_each_format_is_detected_and_read_from_a_file_and_a_hub_dataset(fmt, tmp_path, monkeypatch):
    import datasets

    rows = [formats_of(turns, i)[fmt] for i, turns in enumerate(dialogues(10))]
    from_file = load_splits(data_args(train_file=write_jsonl(tmp_path / "d.jsonl", rows)))
    hub = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: hub)
    from_hub = load_splits(data_args(dataset_name="someone/dialogues"))
    for loaded in (from_file, from_hub):
        assert loaded.record_format == fmt and loaded.record_format_from.startswith("detected")
        examples = [e for name in ("train", "validation", "test") for e in loaded.examples[name]]
        assert sorted(e["id"] for e in examples) == sorted(r["id"] for r in rows)  # one example per conversation
        first = next(e for e in examples if e["id"] == "c1")
        turns = dialogues(10)[1]
        assert (first["question"], first["answer"]) == (turns[-2]["content"], turns[-1]["content"])
        if fmt == "alpaca":
            assert "history" not in first and first["context"] == ""
        else:
            assert first["history"] == turns[1:-2] and first["system"] == "You are a pharmacist."
    assert from_file.examples == from_hub.examples


def test_a_conversation_is_one_unit_for_splits_and_the_leak_check(tmp_path):
    rows = [formats_of(turns, i)["messages"] for i, turns in enumerate(dialogues(12))]
    same_last_question = {"id": "other", "messages": [DIALOGUE[1], DIALOGUE[2]]}  # shares a turn, not the dialogue
    train = write_jsonl(tmp_path / "train.jsonl", rows + [same_last_question])
    test = write_jsonl(tmp_path / "test.jsonl", [rows[4], {**rows[7], "id": "again"}])
    loaded = load_splits(data_args(train_file=train, test_file=test, split_ratios=[0.8, 0.2, 0.0]))
    in_train = {e["id"] for e in loaded.examples["train"] + loaded.examples["validation"]}
    assert in_train == {r["id"] for r in rows} | {"other"}
    assert loaded.leaked_questions == 2  # the two conversations given again; "other" shares one turn only


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ({"messages": [DIALOGUE[1]]}, "has no assistant turn after its last user turn"),
        ({"messages": [DIALOGUE[2], DIALOGUE[1]]}, "turn 1 is a assistant turn first"),
        ({"messages": [DIALOGUE[1], DIALOGUE[3], DIALOGUE[2]]}, "turn 2 is a user turn after a user turn"),
        ({"messages": [DIALOGUE[1], {"role": "tool", "content": "x"}]}, "turn 2 has the role 'tool'"),
        ({"messages": [DIALOGUE[1], {"role": "assistant", "content": "  "}]}, "turn 2 (assistant) is empty"),
        ({"messages": [DIALOGUE[1], DIALOGUE[2], DIALOGUE[0]]}, "turn 3 is a system turn; only"),
        ({"messages": [DIALOGUE[1], {"role": "assistant"}]}, 'turn 2 is {"role": "assistant"}, not'),
        ({"messages": []}, "'messages' is [], not a list of turns"),
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]}, "the from 'bot'"),
    ],
)
def test_a_bad_conversation_is_one_line_naming_the_record_and_turn(record, fragment, tmp_path):
    good = formats_of(DIALOGUE, 0)["messages" if "messages" in record else "sharegpt"]
    path = write_jsonl(tmp_path / "d.jsonl", [good, record])
    with pytest.raises(InputError, match="record 2") as raised:
        load_splits(data_args(train_file=path))
    assert fragment in str(raised.value)


def test_a_record_format_that_does_not_match_names_the_fields_found(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(InputError) as raised:
        load_splits(data_args(train_file=path, record_format="messages"))
    assert "record_format messages: " in str(raised.value) and "its fields: question, answer" in str(raised.value)
    assert "use record_format fields or auto" in str(raised.value)
    messages = write_jsonl(tmp_path / "m.jsonl", [formats_of(DIALOGUE, 0)["messages"]])
    with pytest.raises(InputError, match="label_field reads a label field; messages records have none"):
        load_splits(data_args(train_file=messages, label_field="decision"))
    assert load_splits(data_args(train_file=path, record_format="fields")).record_format == "fields"


def chat_tokenizer(style: str):
    from transformers import AutoTokenizer

    from tiny_models import build_styled_tokenizer

    return AutoTokenizer.from_pretrained(SMOLLM2) if style == "smollm2" else build_styled_tokenizer(style)


def conversation_example(turns: list[dict]) -> dict:
    system = turns[0]["content"] if turns[0]["role"] == "system" else None
    body = turns[1:] if system else turns
    example = {"id": "c", "question": body[-2]["content"], "context": "", "answer": body[-1]["content"]}
    return {**example, "history": body[:-2], **({"system": system} if system else {})}


def encoded_dialogue(style: str):
    """The tokenizer of `style`, its prompt format, DIALOGUE as an example, and that example's training features."""
    tokenizer = chat_tokenizer(style)
    fmt = prompt_format(tokenizer, PromptArguments())
    example = conversation_example(DIALOGUE)
    features, fitted = encoded(tokenizer, fmt, example, 4096, all_turns=True)
    assert fitted.dropped_exchanges == 0
    return tokenizer, fmt, example, features


@pytest.mark.parametrize("style", ["smollm2", "gemma", "llama3"])
def test_the_loss_covers_exactly_the_assistant_turns_of_the_rendered_template(style):
    tokenizer, fmt, example, features = encoded_dialogue(style)
    # the sequence is the template's own rendering of the whole conversation (Gemma: the system prompt merged into
    # the first user turn, as it has no system role), up to the end of the last assistant turn
    messages = (
        DIALOGUE
        if style != "gemma"
        else [{**DIALOGUE[1], "content": f"{DIALOGUE[0]['content']}\n\n{DIALOGUE[1]['content']}"}, *DIALOGUE[2:]]
    )
    assert tokenizer.decode(features["input_ids"]) == tokenizer.apply_chat_template(messages, tokenize=False).rstrip()
    # token by token: the labelled runs are each assistant turn as the template ends it, and nothing else
    runs, run = [], []
    for token, label in zip(features["input_ids"], features["labels"], strict=True):
        assert label in (token, IGNORE_INDEX)
        if label == IGNORE_INDEX and run:
            runs.append(run)
            run = []
        elif label != IGNORE_INDEX:
            run.append(token)
    runs.append(run)
    answers = [t["content"] for t in DIALOGUE if t["role"] == "assistant"]
    assert runs == [answer_ids(tokenizer, fmt, answer) for answer in answers]
    assert [tokenizer.decode(r, skip_special_tokens=True).strip() for r in runs] == answers
    last, _ = encoded(tokenizer, fmt, example, 4096, all_turns=False)
    assert last["input_ids"] == features["input_ids"]
    assert [t for t in last["labels"] if t != IGNORE_INDEX] == answer_ids(tokenizer, fmt, answers[-1])


@pytest.mark.parametrize("style", ["smollm2", "gemma", "llama3"])
def test_the_generation_prompt_of_the_last_turn_is_exactly_the_training_prefix(style):
    tokenizer, fmt, example, features = encoded_dialogue(style)
    kept, prompts = generation_prompts(tokenizer, fmt, [example], 4096, 32)
    prefix = features["input_ids"][: len(prompts[0])]
    assert kept == [example] and prompts[0] == prefix
    assert features["input_ids"][len(prefix) :] == answer_ids(tokenizer, fmt, example["answer"])


def test_a_long_conversation_loses_its_oldest_exchanges_never_the_last_answer(tokenizer):
    fmt = prompt_format(tokenizer, PromptArguments())
    example = conversation_example(DIALOGUE)
    full, _ = encoded(tokenizer, fmt, example, 4096, all_turns=True)
    second = len(full["input_ids"]) - 2  # room for all but the first exchange
    cut, fitted = encoded(tokenizer, fmt, example, second, all_turns=True)
    assert fitted.dropped_exchanges == 1 and len(cut["input_ids"]) <= second
    text = tokenizer.decode(cut["input_ids"])
    assert DIALOGUE[1]["content"] not in text and DIALOGUE[3]["content"] in text and DIALOGUE[0]["content"] in text
    assert tokenizer.decode(cut["input_ids"][-len(answer_ids(tokenizer, fmt, example["answer"])) :]).startswith(
        DIALOGUE[-1]["content"]
    )
    only_last = fit_prompt(
        tokenizer, fmt, example, len(fit_prompt(tokenizer, fmt, {**example, "history": []}, 4096).ids)
    )
    assert only_last.dropped_exchanges == 2 and only_last.segments is not None
    assert fit_prompt(tokenizer, fmt, example, 5).segments is None  # not even the last exchange fits: dropped


def test_counts_of_shortened_conversations_reach_the_log(tokenizer):
    from bioqa.data.prompts import encode_dataset

    fmt = prompt_format(tokenizer, PromptArguments())
    examples = [conversation_example(DIALOGUE), conversation_example(DIALOGUE[:3])]
    limit = len(encoded(tokenizer, fmt, examples[0], 4096, True)[0]["input_ids"]) - 2
    features, counts = encode_dataset(tokenizer, fmt, examples, limit)
    assert len(features) == 2 and counts["shortened"] == 1 and counts["dropped_exchanges"] == 1
    assert splits_module.count_leaked_questions({"train": examples[:1], "test": examples[1:]}) == 0
