"""Is the answer right? Labels of yes/no/maybe and multiple-choice questions, read from generated answers
and scored by accuracy and macro-F1.

Plain functions over lists of strings (the standard library only; numpy loads for resampling), for
scripts and notebooks alike::

    import metrics_utils
    predicted = [metrics_utils.extract_label(answer, ["yes", "no", "maybe"]) for answer in answers]
    metrics_utils.label_metrics(predicted, gold, ["yes", "no", "maybe"])

A label is read from the *start* of an answer, after any punctuation and a leading "Answer:" /
"The answer is": `B`, `(B)`, `B.`, `**B**` and `Answer: b` all read as B, "Yes, because ..." as
yes. Labels and answers are compared in one normal form, Unicode-compatible and case-folded (`STRASSE`
is `Straße`), and punctuation a label itself starts with is never stripped from an answer (labels `+`
and `-`, or `>5 years`, read as written). A label ends at a word boundary: "No-one knows" and "None"
do not read as no. For a multiple-choice question an answer that starts with an option's text reads
as that option's letter. An answer that starts with none of them is *unparsed*: it counts as wrong.

Accuracy and macro-F1 equal scikit-learn's `accuracy_score` and `f1_score(average="macro",
labels=<the declared labels>, zero_division=0)`, an unparsed answer being a prediction outside the
labels (tests/unit/data/test_labels.py checks both on random labels).
"""

from __future__ import annotations

import functools
import math
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LETTERS = string.ascii_uppercase
TARGETS = ("answer", "label", "label_then_answer")  # what the model learns to write (--target)
UNPARSED = "unparsed"  # the confusion matrix's column for answers that name no label

# What label scoring logs at each evaluation (eval_<name>): read from generated answers, or chosen by log-likelihood.
LABEL_METRICS = ("accuracy", "macro_f1", "unparsed", "loglik_accuracy", "loglik_macro_f1")


def fold(text: str) -> str:
    """The form labels and answers are compared in: Unicode-compatible (NFKC) and case-folded."""
    return unicodedata.normalize("NFKC", text).casefold()


@functools.lru_cache(maxsize=64)
def _lead(kept: str) -> re.Pattern:
    """Punctuation, markup and a leading "Answer:" / "The answer is" before the label; never the characters in
    `kept` (those a label starts with)."""
    mark = rf"(?![{re.escape(kept)}])[\W_]" if kept else r"[\W_]"
    return re.compile(rf"^(?:{mark})*(?:(?:the\s+)?(?:correct\s+)?answer(?:\s+is)?\b(?:{mark})*)?")


def _after_lead(folded: str, written: Sequence[str]) -> str:
    kept = "".join(sorted({w[0] for w in written if w and not (w[0].isalnum() or w[0] == "_")}))
    return _lead(kept).sub("", folded.strip(), count=1)


# ----------------------------------------------------------------------------- options


def option_letters(count: int) -> tuple[str, ...]:
    if not 0 < count <= len(LETTERS):
        raise ValueError(f"{count} options; a question has 2 to {len(LETTERS)}")
    return tuple(LETTERS[:count])


def as_options(value: Any) -> dict[str, str]:
    """A question's options, lettered: from a list (in order), a dict keyed by letter (MedQA's {"A": ...})
    or a dict keyed otherwise (lettered in its order). ValueError for fewer than two, or a non-text option."""
    if isinstance(value, Mapping):
        keys = [str(key).strip().upper() for key in value]
        lettered = sorted(keys) == list(LETTERS[: len(keys)])  # keyed A, B, C ...; any other keys: their order
        pairs = zip(keys if lettered else LETTERS, value.values())
    elif isinstance(value, (list, tuple)):
        pairs = zip(LETTERS, value)
    else:
        raise ValueError(f"options must be a list or an object keyed by letter, not {type(value).__name__}")
    if len(value) > len(LETTERS):
        raise ValueError(f"{len(value)} options; at most {len(LETTERS)} can be lettered")
    options = {}
    for letter, text in pairs:
        if not isinstance(text, (str, int, float)) or isinstance(text, bool) or not str(text).strip():
            raise ValueError(f"option {letter} is {text!r}, not a text")
        options[letter] = str(text).strip()
    if len(options) < 2:
        raise ValueError(f"{len(options)} option(s); a multiple-choice question needs at least two")
    return dict(sorted(options.items()))


def render_options(options: Mapping[str, str]) -> str:
    """The options as the prompt shows them, one lettered line each ("A. Insulin"): the same text in training
    and generation, because the question the prompt is built from carries them."""
    return "\n".join(f"{letter}. {text}" for letter, text in options.items())


def question_with_options(question: str, options: Mapping[str, str] | None) -> str:
    return f"{question}\n{render_options(options)}" if options else question


# ----------------------------------------------------------------------------- labels and targets


def normalise_label(value: Any, labels: Sequence[str], options: Mapping[str, str] | None = None) -> str:
    """`value` as one of `labels` (compared folded, see `fold`). With options it may also be a 0-based index
    (MedMCQA's `cop`) or an option's exact text; true / false read as yes / no. ValueError when it is none."""
    if isinstance(value, bool):
        value = "yes" if value else "no"
    if options and isinstance(value, int) and 0 <= value < len(options):
        return list(options)[value]
    text = str(value).strip()
    by_form = {fold(label): label for label in labels}
    if fold(text) in by_form:
        return by_form[fold(text)]
    if options:
        if text.isdigit() and int(text) < len(options):
            return list(options)[int(text)]
        for letter, option in options.items():
            if fold(option) == fold(text):
                return letter
    raise ValueError(f"{text!r} is not one of the labels {', '.join(labels)}")


def check_label_set(labels: Sequence[str]) -> tuple[str, ...]:
    """The declared labels, stripped; ValueError for fewer than two, an empty one, or two the reader cannot tell
    apart (the same once folded, see `fold`)."""
    cleaned = tuple(str(label).strip() for label in labels)
    if len(cleaned) < 2:
        raise ValueError(f"{len(cleaned)} label(s) ({', '.join(cleaned) or 'none'}); give at least two")
    if any(not label for label in cleaned):
        raise ValueError("an empty label; every label needs a text")
    forms = [fold(label) for label in cleaned]
    twice = next((i for i, form in enumerate(forms) if forms.index(form) != i), None)
    if twice is not None:
        first = cleaned[forms.index(forms[twice])]
        same = "is given twice" if first == cleaned[twice] else f"and {cleaned[twice]!r} read the same"
        raise ValueError(
            f"the label {first!r} {same} (labels are compared case-folded, so an answer could not tell them apart)"
        )
    return cleaned


def target_text(target: str, label: str | None, answer: str) -> str:
    """What the model is trained to write: the answer, the label alone, or the label then the answer
    ("Yes. The results show ...")."""
    if target == "answer":
        return answer
    if label is None:
        raise ValueError(f"target {target!r} needs a label")
    if target == "label":
        return label
    if target == "label_then_answer":
        return f"{label[:1].upper()}{label[1:]}. {answer}"
    raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")


def _starts_with(folded: str, word: str) -> bool:
    """`folded` (an answer after `fold`) begins with `word` as a whole word: "no" starts "No change", not "None"
    or "No-one" (a hyphen or apostrophe that joins a letter continues the word)."""
    word = fold(word)
    if not folded.startswith(word):
        return False
    after = folded[len(word) : len(word) + 2]
    joined = after[:1] in "-'\u2019\u2010\u2011" and after[1:2].isalnum() and word[-1:].isalnum()
    return not after[:1].isalnum() and not joined


def extract_label(text: str, labels: Sequence[str], options: Mapping[str, str] | None = None) -> str | None:
    """The label an answer starts with (see the module's docstring), or None when it names none."""
    candidates = [(label, label) for label in labels]
    if options:  # an option's text before letters: "A patient ..." must not read as A when an option says so
        candidates = [(option, letter) for letter, option in options.items()] + candidates
    rest = _after_lead(fold(text), [fold(written) for written, _ in candidates])
    for written, label in sorted(candidates, key=lambda pair: -len(fold(pair[0]))):
        if _starts_with(rest, written):
            return label
    return None


def strip_label(text: str, labels: Sequence[str]) -> str:
    """The answer after its leading label ("Yes. The results ..." -> "The results ..."); unchanged without one."""
    stripped = text.strip()
    folded = _after_lead(fold(stripped), [fold(label) for label in labels])
    for label in sorted(labels, key=lambda label: -len(fold(label))):
        if _starts_with(folded, label):
            tail = folded[len(fold(label)) :]  # the rest, folded: cut the original where its folded suffix is that
            cut = next((i for i in range(len(stripped) + 1) if fold(stripped[i:]) == tail), len(stripped))
            return stripped[cut:].lstrip(" \t.,:;)]*-\n")
    return stripped


# ----------------------------------------------------------------------------- metrics


def _check_label_inputs(predicted: Sequence[str | None], gold: Sequence[str], labels: Sequence[str]) -> None:
    if len(predicted) != len(gold):
        raise ValueError(f"predicted and gold differ in length: {len(predicted)} and {len(gold)}")
    if not gold:
        raise ValueError("gold is empty: there is nothing to score")
    known = set(labels)
    for name, values, allowed in (("gold", gold, known), ("predicted", predicted, known | {None})):
        stray = next((i for i, value in enumerate(values) if value not in allowed), None)
        if stray is not None:
            raise ValueError(f"{name}[{stray}] is {values[stray]!r}, not one of the labels {', '.join(labels)}")


def label_metrics(predicted: Sequence[str | None], gold: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over `labels`, per-label precision / recall / F1 / support, the confusion matrix
    (gold label -> predicted label -> count, with an `unparsed` column) and the unparsed rate.

    `predicted` holds labels or None (an answer that named no label: wrong, and counted as unparsed)."""
    _check_label_inputs(predicted, gold, labels)
    confusion = {g: {p: 0 for p in [*labels, UNPARSED]} for g in labels}
    for p, g in zip(predicted, gold):
        confusion[g][UNPARSED if p is None else p] += 1
    per_label = {}
    for label in labels:
        tp = confusion[label][label]
        predicted_as = sum(confusion[g][label] for g in labels)
        support = sum(confusion[label].values())
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * tp / (predicted_as + support) if tp else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    n = len(gold)
    return {
        "accuracy": sum(confusion[label][label] for label in labels) / n,
        "macro_f1": math.fsum(row["f1"] for row in per_label.values()) / len(labels),
        "unparsed": sum(row[UNPARSED] for row in confusion.values()) / n,
        "num_examples": n,
        "per_label": per_label,
        "confusion": confusion,
    }


@dataclass
class LabelScores:
    """Predicted and gold labels of one system, resampled by `bioqa.evaluate.bootstrap` like the text `TextScores`."""

    predicted: list[str | None]
    gold: list[str]
    labels: tuple[str, ...]

    names = ("accuracy", "macro_f1")

    def __post_init__(self) -> None:
        _check_label_inputs(self.predicted, self.gold, self.labels)

    def __len__(self) -> int:
        return len(self.gold)

    def corpus(self) -> dict[str, Any]:
        return label_metrics(self.predicted, self.gold, self.labels)

    def correct(self) -> list[bool]:
        return [p == g for p, g in zip(self.predicted, self.gold)]

    def resampled(self, indices: Any) -> dict[str, float]:
        """Accuracy and macro-F1 over the examples at `indices` (repeats allowed), from one confusion count."""
        import numpy as np

        codes = self.__dict__.get("_codes")
        if codes is None:
            index = {label: i for i, label in enumerate(self.labels)}
            k = len(self.labels)  # code k: unparsed
            gold = np.asarray([index[g] for g in self.gold])
            predicted = np.asarray([k if p is None else index[p] for p in self.predicted])
            codes = self.__dict__["_codes"] = gold * (k + 1) + predicted
        k = len(self.labels)
        confusion = np.bincount(codes[indices], minlength=k * (k + 1)).reshape(k, k + 1)
        tp = np.diag(confusion[:, :k])
        denominator = confusion[:, :k].sum(axis=0) + confusion.sum(axis=1)  # predicted as + support
        f1 = np.divide(2 * tp, denominator, out=np.zeros(k), where=tp > 0)
        return {"accuracy": float(tp.sum() / confusion.sum()), "macro_f1": float(f1.mean())}


def mcnemar_exact(baseline_correct: Sequence[bool], candidate_correct: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test of two systems' accuracy on the same questions: the two-sided binomial test of the
    discordant pairs (b: only the baseline right, c: only the candidate right) against p = 1/2."""
    if len(baseline_correct) != len(candidate_correct):
        raise ValueError(f"paired test needs the same questions: {len(baseline_correct)} and {len(candidate_correct)}")
    pairs = list(zip(baseline_correct, candidate_correct))
    b = sum(1 for base, cand in pairs if base and not cand)
    c = sum(1 for base, cand in pairs if cand and not base)
    n = b + c
    tail = math.fsum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n if n else 0.5
    return {"baseline_only_right": b, "candidate_only_right": c, "p_value": min(1.0, 2 * tail)}
