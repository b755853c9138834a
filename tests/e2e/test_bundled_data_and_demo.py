"""The embedded default: the bundled QA set, the converted SmolLM2, and the demo pipeline."""

import json
import subprocess
import sys

import pytest

import metrics_utils
from helpers import ROOT, read_jsonl

DATA = ROOT / "data" / "bioqa"
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct"
TOPICS = {
    "pharmacology",
    "physiology",
    "pathology",
    "microbiology",
    "genetics",
    "immunology",
    "clinical chemistry",
    "epidemiology",
}


def split(name: str) -> list[dict]:
    return read_jsonl(DATA / f"{name}.jsonl")


def test_bundled_data_fields_sizes_and_no_leaks():
    from bioqa.data.splits import count_leaked_questions

    splits = {name: split(name) for name in ("train", "validation", "test")}
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 240, "validation": 32, "test": 48}
    rows = [row for rows in splits.values() for row in rows]
    assert all(set(row) == {"id", "topic", "question", "context", "answer"} for row in rows)
    assert all(row["question"].strip() and row["answer"].strip() for row in rows)
    assert len({row["id"] for row in rows}) == len(rows) == 320
    assert {row["topic"] for row in rows} == TOPICS
    assert all(1 <= row["answer"].count(". ") + 1 <= 3 for row in rows)  # one to three sentences
    assert sum(bool(row["context"]) for row in rows) >= 40  # some questions come with a passage
    assert count_leaked_questions(splits) == 0
    assert (ROOT / "data" / "README.md").is_file()


def test_multiple_choice_set_balanced_distinct_and_split_without_leaks():
    from collections import Counter

    from bioqa.data.splits import count_leaked_questions, load_splits
    from bioqa.recipe import parse_recipe as parse

    mcq = ROOT / "data" / "mcq"
    files = {name: mcq / f"{name}.jsonl" for name in ("train", "validation", "test")}
    raw = {name: read_jsonl(path) for name, path in files.items()}
    rows = [row for part in raw.values() for row in part]
    assert {name: len(part) for name, part in raw.items()} == {"train": 96, "validation": 16, "test": 48}
    assert all(set(row) == {"id", "topic", "question", "options", "correct"} for row in rows)
    assert len({row["id"] for row in rows}) == len({row["question"] for row in rows}) == 160
    assert all(len(set(row["options"])) == 4 and all(o.strip() for o in row["options"]) for row in rows)
    assert Counter(row["topic"] for row in rows) == {topic: 20 for topic in Counter(row["topic"] for row in rows)}
    for name, part in raw.items():  # every letter correct equally often: one letter always scores 0.25
        assert set(Counter(row["correct"] for row in part).values()) == {len(part) // 4}, name
    opts = parse(["--config", str(ROOT / "configs" / "mcq-smollm2.yaml")])
    splits = load_splits(opts.data)  # the recipe reads the set: lettered options, labels A-D
    assert splits.labels == ("A", "B", "C", "D") and count_leaked_questions(splits.examples) == 0
    first = splits.examples["test"][0]
    assert first["question"].endswith(
        "\n".join(f"{letter}. {o}" for letter, o in zip("ABCD", raw["test"][0]["options"]))
    )
    assert (mcq / "README.md").is_file()


def test_dialogue_set_is_conversations_split_whole_and_read_by_its_recipe():
    from collections import Counter

    from bioqa.data.splits import count_leaked_questions, load_splits
    from bioqa.recipe import parse_recipe as parse

    folder = ROOT / "data" / "dialogues"
    raw = {name: read_jsonl(folder / f"{name}.jsonl") for name in ("train", "validation", "test")}
    rows = [row for part in raw.values() for row in part]
    assert {name: len(part) for name, part in raw.items()} == {"train": 40, "validation": 8, "test": 16}
    assert all(set(row) == {"id", "topic", "messages"} for row in rows) and len({row["id"] for row in rows}) == 64
    assert Counter(row["topic"] for row in rows) == {topic: 8 for topic in Counter(row["topic"] for row in rows)}
    assert all(len(row["messages"]) in (2, 4) for row in rows)
    assert sum(len(row["messages"]) == 4 for row in rows) >= 48  # most have a follow-up that leans on the first
    opts = parse(["--config", str(ROOT / "configs" / "dialogues-smollm2.yaml")])
    splits = load_splits(opts.data)  # every record a valid conversation, none on both sides of a split
    assert splits.record_format == "messages" and count_leaked_questions(splits.examples) == 0
    first = splits.examples["test"][0]
    messages = raw["test"][0]["messages"]
    assert (first["question"], first["answer"]) == (messages[-2]["content"], messages[-1]["content"])
    assert first["history"] == messages[:-2]
    assert (folder / "README.md").is_file()


@pytest.mark.slow
def test_converted_smollm2_loads_and_answers():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    assert (
        tokenizer.chat_template
        and tokenizer.eos_token == "<|im_end|>"
        and "Q4_1" in (MODEL / "PROVENANCE.txt").read_text()
    )
    messages = [{"role": "user", "content": "Which organ produces insulin? Answer in one word."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    assert "pancrea" in tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).lower()


@pytest.mark.slow
def test_demo_pipeline_on_a_reduced_recipe(tmp_path):
    command = [
        sys.executable,
        "examples/demo.py",
        "--output_dir",
        str(tmp_path / "demo"),
        "--max_predict_samples",
        "8",
        "--num_train_epochs",
        "1",
        "--max_train_samples",
        "24",
        "--generation_eval_samples",
        "8",
        "--generation_max_new_tokens",
        "16",
        "--report_to",
        "none",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    assert "| rougeL |" in result.stdout and "total" in result.stdout
    demo = tmp_path / "demo"
    for path in (
        "zero-shot/predictions.jsonl",
        "fine-tuned/adapter_model.safetensors",
        "fine-tuned/predictions.jsonl",
        "report/report.md",
        "report/scores.png",
        "report/training_curves.png",
        "merged/merge_report.json",
    ):
        assert (demo / path).is_file(), path
    assert json.loads((demo / "merged" / "merge_report.json").read_text())["verification"]["passed"]
    # the report's table holds each system's own scores, as its predictions rescore
    own = {}
    for side in ("zero-shot", "fine-tuned"):
        rows = read_jsonl(demo / side / "predictions.jsonl")
        own[side] = metrics_utils.compute_metrics([r["prediction"] for r in rows], [r["reference"] for r in rows])
    text = (demo / "report" / "report.md").read_text()
    for metric in ("rougeL", "meteor"):
        assert f"| {metric} (0-1) | {own['zero-shot'][metric]:.4f} | {own['fine-tuned'][metric]:.4f} |" in text, metric
