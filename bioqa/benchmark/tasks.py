"""The tasks a benchmark runs: lm-evaluation-harness's own, by name (their questions come from the Hugging Face Hub),
and `local`, written here from the user's label data (yes/no/maybe, or lettered options) so a benchmark runs with no
network. The local task asks each question with the toolkit's own prompt (chat template, system prompt, options
under the question) and offers each label as training writes it (`bioqa.data.prompts.label_texts`), so lm-eval's
`acc` chooses what `--label_scoring loglik` chooses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioqa.data.prompts import PromptFormat, label_texts, prompt_text
from bioqa.data.splits import Example
from bioqa.errors import InputError, did_you_mean, option

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

LOCAL = "local"  # what the user writes in --tasks
LOCAL_TASK = "bioqa_local"  # its name among lm-eval's tasks

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: prompt
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def local_rows(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, examples: list[Example], labels: tuple[str, ...], target: str
) -> list[dict[str, Any]]:
    """One lm-eval document per question: its id, the prompt, each label's continuation, the gold label's index."""
    texts = label_texts(fmt, labels, target)
    return [
        {
            "id": example["id"],
            "prompt": prompt_text(tokenizer, fmt, example["question"], example["context"], example.get("system")),
            "choices": [texts[label] for label in labels],
            "labels": list(labels),
            "gold": labels.index(example["label"]),
        }
        for example in examples
    ]


def write_local_task(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """The local task's questions and definition in `folder` (lm-eval's include path); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{LOCAL_TASK}.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    point_local_task(folder, folder)
    return folder


def point_local_task(folder: Path, final: Path) -> None:
    """The task definition in `folder` naming its questions file where it will be: in `final` (lm-eval reads a
    definition's data files by absolute path; the results are written in a staging folder first)."""
    data = json.dumps(str((final / f"{LOCAL_TASK}.jsonl").resolve()))
    (folder / f"{LOCAL_TASK}.yaml").write_text(TASK_YAML.format(name=LOCAL_TASK, data=data), encoding="utf-8")


def task_problems(tasks: list[str], known: set[str], online: bool, setting: str = "tasks") -> list[str]:
    """Task names lm-eval does not know (with the closest it does), and Hub tasks asked for while offline;
    `setting` names the option that gave them."""
    problems = []
    for name in (task for task in tasks if task != LOCAL):
        if name not in known:
            close = did_you_mean(name, known)
            problems.append(
                f"{option(setting)} {name} is no lm-evaluation-harness task or group"
                + (f" ({close})" if close else "")
                + f"; list them with: lm-eval ls tasks; or use {LOCAL} for your own file"
            )
        elif not online:
            problems.append(
                f"{option(setting)} {name} loads its questions from the Hugging Face Hub, which is unreachable; "
                f"offline, benchmark your own labelled file: {option(setting)} {LOCAL} {option('test_file')} FILE "
                f"{option('label_field')} FIELD"
            )
    return problems


def harness_tasks(tasks: list[str]) -> list[str]:
    """The names lm-eval runs: its own, and the local task under its registered name."""
    return [LOCAL_TASK if task == LOCAL else task for task in tasks]


def check_local_data(examples: list[Example], labels: tuple[str, ...] | None) -> None:
    if labels is None:
        raise InputError(
            f"{option('tasks')} {LOCAL} scores labels: give {option('label_field')} (and {option('options_field')} "
            "for lettered options), as for training"
        )
    if not examples:
        raise InputError(f"{option('tasks')} {LOCAL}: the test split is empty; give {option('test_file')}")
