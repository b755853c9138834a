"""The built-in metrics, registered on import: ROUGE, BLEU and METEOR (definitions in bioqa.evaluate.metrics'
docstring, engine in bioqa.evaluate.scorers), and exact match and token F1 with the SQuAD v1.1 definitions.

Exact match and token F1 are those of the official SQuAD v1.1 evaluation script, which the Hugging Face
`evaluate` "squad" metric runs: both texts are lower-cased, stripped of ASCII punctuation and of the
articles a/an/the, and split on whitespace; exact match is 1 when the normalised texts are equal, token F1
the harmonic mean of precision and recall of the shared tokens (0 when none are shared), each the maximum
over the references, the corpus score the mean, on SQuAD's 0-100 scale. Two empty answers match exactly
but have F1 0, as in that script.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bioqa import compat
from bioqa.evaluate.registry import Metric, MetricScores, Score, register_metric
from bioqa.evaluate.scorers import Job, RougeScorer, bleu_metric, require_nltk_data, score_all, worker_count

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _workers(options: dict[str, Any], n: int) -> int:
    return worker_count(options.get("num_workers"), n)


class Rouge(Metric):
    name = "rouge"
    scores = tuple(Score(t, f"ROUGE-{t.removeprefix('rouge')}") for t in ROUGE_TYPES)
    options = ("rouge_types", "use_stemmer", "rouge_tokenizer")
    headline = "rougeL"

    def score(self, predictions: Sequence[str], references: list[list[str]], **options: Any) -> MetricScores:
        rouge = RougeScorer(
            options.get("rouge_types") or ROUGE_TYPES, options.get("use_stemmer", False), options.get("rouge_tokenizer")
        )
        raw = score_all(Job(("rouge",), rouge, (), ()), predictions, references, _workers(options, len(predictions)))
        return MetricScores({name: raw[name] for name in rouge.rouge_types})


@dataclass
class BleuScores(MetricScores):
    """Sentence BLEU per example; the corpus score is corpus BLEU from the summed sacreBLEU statistics of the
    examples (of a resample too), not a mean."""

    statistics: list[list[int]] = None  # type: ignore[assignment]  # sacreBLEU's sufficient statistics per example
    bleu_options: tuple = ()

    def corpus(self, indices: Any = None) -> dict[str, float]:
        if indices is None:
            totals = [sum(column) for column in zip(*self.statistics)]
        else:
            import numpy as np

            cache = self.__dict__.setdefault("_arrays", {})
            if "statistics" not in cache:
                cache["statistics"] = np.asarray(self.statistics, dtype=np.int64)
            totals = cache["statistics"][indices].sum(axis=0).tolist()
        return {"bleu": compat.bleu_from_statistics(bleu_metric(self.bleu_options), list(totals)).score}


class Bleu(Metric):
    name = "bleu"
    scores = (Score("bleu", "BLEU", 100.0),)
    options = ("bleu_options",)

    def score(self, predictions: Sequence[str], references: list[list[str]], **options: Any) -> MetricScores:
        bleu_options = tuple(sorted((options.get("bleu_options") or {}).items()))
        raw = score_all(
            Job(("bleu",), None, bleu_options, ()), predictions, references, _workers(options, len(predictions))
        )
        sentence_bleu = bleu_metric(bleu_options, sentence_level=True)
        per_example = [compat.bleu_from_statistics(sentence_bleu, row).score for row in raw["bleu_stats"]]
        return BleuScores(
            {"bleu": per_example},
            {"bleu_signature": _signature(bleu_options, references)},
            raw["bleu_stats"],
            bleu_options,
        )


def _signature(options: tuple, references: list[list[str]]) -> str:
    """sacreBLEU's signature; nrefs is the reference count, or "var" when it differs per example."""
    bleu = bleu_metric(options)
    counts = {len(refs) for refs in references}
    bleu.num_refs = counts.pop() if len(counts) == 1 else -1  # what sacreBLEU's reference cache sets
    return str(bleu.get_signature())


class Meteor(Metric):
    name = "meteor"
    scores = (Score("meteor", "METEOR"),)
    options = ("meteor_alpha", "meteor_beta", "meteor_gamma")
    needs = "NLTK's WordNet and punkt_tab (make setup)"

    def check(self) -> None:
        require_nltk_data()

    def score(self, predictions: Sequence[str], references: list[list[str]], **options: Any) -> MetricScores:
        params = (options.get("meteor_alpha", 0.9), options.get("meteor_beta", 3.0), options.get("meteor_gamma", 0.5))
        raw = score_all(
            Job(("meteor",), None, (), params), predictions, references, _workers(options, len(predictions))
        )
        return MetricScores({"meteor": raw["meteor"]})


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def squad_tokens(text: str) -> list[str]:
    """SQuAD v1.1's normalised answer, split into tokens: lower case, no punctuation, no articles."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def _token_f1(prediction: list[str], reference: list[str]) -> float:
    shared = sum((Counter(prediction) & Counter(reference)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(prediction), shared / len(reference)
    return 2 * precision * recall / (precision + recall)


class ExactMatch(Metric):
    name = "exact_match"
    scores = (Score("exact_match", "Exact match", 100.0),)

    def score(self, predictions: Sequence[str], references: list[list[str]], **options: Any) -> MetricScores:
        matches = [
            100.0 * any(squad_tokens(p) == squad_tokens(r) for r in refs) for p, refs in zip(predictions, references)
        ]
        return MetricScores({"exact_match": matches})


class TokenF1(Metric):
    name = "token_f1"
    scores = (Score("token_f1", "Token F1", 100.0),)

    def score(self, predictions: Sequence[str], references: list[list[str]], **options: Any) -> MetricScores:
        f1 = [
            100.0 * max(_token_f1(squad_tokens(p), squad_tokens(r)) for r in refs)
            for p, refs in zip(predictions, references)
        ]
        return MetricScores({"token_f1": f1})


DEFAULT_METRICS = ("rouge", "bleu", "meteor")  # what is scored unless a run names others
for _metric in (Rouge(), Bleu(), Meteor(), ExactMatch(), TokenF1()):
    register_metric(_metric)
