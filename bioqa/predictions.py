"""Prediction files: generated answers with their references and per-example scores, one JSON row each.

Written by every evaluation during training (predictions/eval-step-N.jsonl) and by --do_predict
(predictions.jsonl); read by the comparison. A row: id, question, reference, prediction, and the
per-example scores (rouge1 ... rougeLsum, bleu as sentence BLEU, meteor).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from bioqa.data import Example
from bioqa.errors import InputError, option, shown
from bioqa.files import parse_jsonl, read_text
from bioqa.metrics import Scores, score_predictions
from bioqa.prompts import PromptFormat, fit_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class PredictionRow(TypedDict, total=False):
    """One row of a prediction file: the example, the answer, and its scores (those that were computed)."""

    id: str
    question: str
    reference: str
    prediction: str
    rouge1: float
    rouge2: float
    rougeL: float
    rougeLsum: float
    bleu: float  # sentence BLEU, 0-100
    meteor: float


MIN_PROMPT_BUDGET = 32  # tokens a prompt may always use, however long the answers may grow


def generation_prompts(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    examples: list[Example],
    max_seq_length: int,
    max_new_tokens: int,
) -> tuple[list[Example], list[list[int]]]:
    """Prompt ids that leave room for `max_new_tokens` (context cut first); examples that cannot fit are left out."""
    budget = max(MIN_PROMPT_BUDGET, max_seq_length - max_new_tokens)
    fitted = [(row, fit_prompt(tokenizer, fmt, row["question"], row["context"], budget)[0]) for row in examples]
    kept = [(row, ids) for row, ids in fitted if ids is not None]
    return [row for row, _ in kept], [ids for _, ids in kept]


def score_rows(
    examples: Sequence[Example], predictions: Sequence[str], metrics: Sequence[str]
) -> tuple[Scores, list[PredictionRow]]:
    """Score predictions against the examples' answers; return the Scores and one file row per example."""
    references = [row["answer"] for row in examples]
    scores = score_predictions(list(predictions), references, metrics=tuple(metrics), num_workers=1)
    rows = [
        PredictionRow(
            id=row["id"],
            question=row["question"],
            reference=row["answer"],
            prediction=prediction,
            **{name: values[i] for name, values in scores.per_example.items()},
        )
        for i, (row, prediction) in enumerate(zip(examples, predictions))
    ]
    return scores, rows


def read_prediction_file(path: str | Path) -> list[PredictionRow]:
    """Rows of a predictions .jsonl; InputError naming the file, row and field for anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"prediction file {path} does not exist; give a predictions.jsonl written by {option('do_predict')}"
        )
    rows = parse_jsonl(read_text(path, "the prediction file"), path, "the file is damaged")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in ("id", "reference", "prediction") if key not in row]
        if missing:
            raise InputError(
                f"{path} row {number} lacks {', '.join(missing)}; give a file written by {option('do_predict')}"
            )
        for key in ("reference", "prediction", "question"):
            if key in row and not isinstance(row[key], str):
                raise InputError(
                    f"{path} row {number}: {key} is {shown(row[key])}, not a text; "
                    f'give a file written by {option("do_predict")} (an empty answer is "")'
                )
        if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
            raise InputError(
                f"{path} row {number}: id is {shown(row['id'])}, not a text or number; give each row a plain id"
            )
        row["id"] = str(row["id"])
    if not rows:
        raise InputError(f"prediction file {path} is empty")
    return rows
