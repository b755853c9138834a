"""Prediction files: generated answers with their references and per-example scores, one JSON row each.

Written by every evaluation during training (predictions/eval-step-N.jsonl) and by --do_predict
(predictions.jsonl); read by the comparison. A row: id, question, reference, prediction, and the
per-example scores of each metric scored (rouge1 ... rougeLsum, bleu as sentence BLEU, meteor by default;
any registered metric's scores under their own names). With labels also: label (the
gold one), predicted_label (read from the prediction; null when it names none) and loglik_label (chosen
by log-likelihood). Without generation (log-likelihood only) the prediction is the chosen label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from bioqa.data.labels import LabelScores, extract_label
from bioqa.data.prompts import PromptFormat, fit_prompt
from bioqa.data.splits import Example
from bioqa.errors import InputError, option, shown
from bioqa.evaluate.bootstrap import Resamplable, bootstrap_intervals
from bioqa.evaluate.metrics import TextScores, score_predictions
from bioqa.evaluate.registry import metrics_reporting
from bioqa.io.files import parse_jsonl, path_kind, read_text, wrong_kind

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from bioqa.generate.generation import Answers


class PredictionRow(TypedDict, total=False):
    """One row of a prediction file: the example, the answer, and its scores (those that were computed; a
    registered metric's scores under their own names, beside these)."""

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
    label: str  # the gold label
    predicted_label: str | None  # read from the prediction; None: it names no label
    loglik_label: str  # the most likely label after the prompt


MIN_PROMPT_BUDGET = 32  # tokens a prompt may always use, however long the answers may grow


def generation_prompts(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    examples: list[Example],
    max_seq_length: int,
    max_new_tokens: int,
) -> tuple[list[Example], list[list[int]]]:
    """Prompt ids that leave room for `max_new_tokens` (a conversation's oldest exchanges, a question's context cut
    first), as training writes them; examples that cannot fit are left out."""
    budget = max(MIN_PROMPT_BUDGET, max_seq_length - max_new_tokens)
    fitted = [(row, fit_prompt(tokenizer, fmt, row, budget).ids) for row in examples]
    kept = [(row, ids) for row, ids in fitted if ids is not None]
    return [row for row, _ in kept], [ids for _, ids in kept]


class ScoredAnswers(NamedTuple):
    """What one set of answers scored: the text metrics, the labels read from the answers and the labels chosen
    by log-likelihood (each None when not computed), and one file row per example."""

    text: TextScores | None
    generated: LabelScores | None
    loglik: LabelScores | None
    rows: list[PredictionRow]

    def resamplable(self) -> dict[str, Resamplable]:
        """Each computed set of scores under the prefix of its metric names."""
        parts = {"": self.text, "label:": self.generated, "loglik:": self.loglik}
        return {prefix: scores for prefix, scores in parts.items() if scores is not None}

    def summary(self, samples: int, seed: int) -> dict[str, Any]:
        """Every corpus score with its percentile bootstrap 95% interval (None without resamples), and for labels
        the per-label precision / recall, the confusion matrix and the unparsed share."""
        flat = self.metrics()
        scores: dict[str, dict[str, Any]] = {}
        for prefix, part in self.resamplable().items():
            intervals = bootstrap_intervals(part, samples, seed=seed) if samples > 0 else {}
            for name in part.names:
                key = name if prefix != "loglik:" else f"loglik_{name}"
                scores[key] = {"score": flat[key], "ci95": list(intervals.get(name, ())) or None}
        details = {
            kind: {k: v for k, v in part.corpus().items() if k in ("per_label", "confusion", "unparsed")}
            for kind, part in (("generated", self.generated), ("loglik", self.loglik))
            if part is not None
        }
        return {"num_examples": len(self.rows), "scores": scores, **({"labels": details} if details else {})}

    def metrics(self) -> dict[str, float]:
        """The corpus numbers, flat (rougeL, bleu, ..., accuracy, macro_f1, unparsed, loglik_accuracy, ...)."""
        result: dict[str, float] = {}
        if self.text is not None:
            result.update({k: float(v) for k, v in self.text.corpus().items() if isinstance(v, (int, float))})
        for prefix, labels in (("", self.generated), ("loglik_", self.loglik)):
            if labels is not None:
                corpus = labels.corpus()
                names = ("accuracy", "macro_f1", "unparsed") if prefix == "" else ("accuracy", "macro_f1")
                result.update({prefix + name: float(corpus[name]) for name in names})
        return result


def score_rows(
    examples: Sequence[Example], answers: Answers, metrics: Sequence[str], labels: tuple[str, ...] | None = None
) -> ScoredAnswers:
    """Score answers against the examples (text metrics on generated answers, accuracy and macro-F1 of their
    labels with a label set); return the scores and one file row per example."""
    rows = [
        PredictionRow(id=row["id"], question=row["question"], reference=row["answer"], prediction="")
        for row in examples
    ]
    text = generated = loglik = None
    if answers.texts is not None:
        text = score_predictions(
            list(answers.texts), [r["reference"] for r in rows], metrics=tuple(metrics), num_workers=1
        )
        for i, row in enumerate(rows):
            row["prediction"] = answers.texts[i]
            row.update({name: values[i] for name, values in text.per_example.items()})
    if labels:
        gold = [row["label"] for row in examples]
        for row, label in zip(rows, gold):
            row["label"] = label
        if answers.texts is not None:
            read = [extract_label(t, labels, e.get("options")) for t, e in zip(answers.texts, examples)]
            generated = LabelScores(read, gold, labels)
            for row, label in zip(rows, read):
                row["predicted_label"] = label
        if answers.loglik_labels is not None:
            loglik = LabelScores(list(answers.loglik_labels), gold, labels)
            for row, label in zip(rows, answers.loglik_labels):
                row["loglik_label"] = label
                if answers.texts is None:
                    row["prediction"] = label
    return ScoredAnswers(text, generated, loglik, rows)


def rescored(
    rows: list[PredictionRow], labels: Sequence[str] | None, metrics: Sequence[str] | None = None
) -> ScoredAnswers:
    """A prediction file's rows scored again: the text `metrics` (default: those the rows carry), and with a label
    set the labels they hold (read from the predictions, and chosen by log-likelihood)."""
    if metrics is None:
        metrics = metrics_reporting(list(rows[0]))
    text = (
        score_predictions(
            [r["prediction"] for r in rows], [r["reference"] for r in rows], metrics=metrics, num_workers=1
        )
        if metrics
        else None
    )
    generated = loglik = None
    if labels and "label" in rows[0]:
        gold = [r["label"] for r in rows]
        if "predicted_label" in rows[0]:
            generated = LabelScores([r.get("predicted_label") for r in rows], gold, tuple(labels))
        if "loglik_label" in rows[0]:
            loglik = LabelScores([r["loglik_label"] for r in rows], gold, tuple(labels))
    return ScoredAnswers(text, generated, loglik, rows)


def read_prediction_file(path: str | Path) -> list[PredictionRow]:
    """Rows of a predictions .jsonl; InputError naming the file, row and field for anything malformed."""
    return checked_prediction_rows(read_rows(path), path)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON Lines results file, read once (a pipe, <(zcat run.jsonl.gz), cannot be read twice)."""
    path = Path(path)
    if path_kind(path) not in ("a file", "a pipe"):
        raise InputError(
            f"prediction file {wrong_kind(path, 'a file')}; give a predictions.jsonl written by {option('do_predict')}"
        )
    return parse_jsonl(read_text(path, "the prediction file"), path, "the file is damaged")


def checked_prediction_rows(rows: list[dict[str, Any]], path: str | Path) -> list[PredictionRow]:
    """The rows of prediction file `path`, checked: InputError naming the file, row and field for anything malformed."""
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
