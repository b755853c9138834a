"""ROUGE, BLEU and METEOR for generated answers: exact, offline and fast.

Plain functions over lists of strings, for scripts and notebooks alike::

    import metrics_utils
    metrics_utils.compute_metrics(["IL-6 is a cytokine."], ["Interleukin 6 (IL-6) is a cytokine."])

The definitions equal the Hugging Face `evaluate` 0.4.6 metric scripts and use the same libraries:

* ROUGE (rouge1, rouge2, rougeL, rougeLsum; F1, 0-1 scale): `rouge_score` with evaluate's defaults
  (no stemmer, its default tokenizer, rougeLsum sentences split on newlines, the best-scoring
  reference per type for multi-reference). evaluate aggregates with an unseeded bootstrap median;
  we report the exact mean of per-example F1, which is deterministic.
* BLEU (0-100 scale): sacreBLEU corpus BLEU with its defaults (13a tokenizer, exp smoothing),
  with its signature string. References may differ in count per prediction.
* METEOR (0-1 scale): `nltk.translate.meteor_score` with alpha 0.9, beta 3, gamma 0.5 over
  `nltk.word_tokenize` tokens; multi-reference takes the maximum; the corpus score is the mean.

Speed comes from doing each piece of work once, never from changing a definition: each distinct
text is tokenised once, rouge1/2 counts n-grams directly, rougeL uses a bit-parallel LCS that
gives the same lengths as rouge_score's table, METEOR gets NLTK's own stemmer and WordNet with
memoised lookups, BLEU is computed from sacreBLEU's per-sentence statistics (which also yield
per-example BLEU and bootstrap intervals without re-tokenising), and large inputs are split over
a pool of forked worker processes.

Text without ASCII letters or digits: rouge_score's tokenizer keeps only [a-z0-9] runs, so such a
text has no ROUGE tokens and scores ROUGE 0 even against itself; BLEU and METEOR tokenise Unicode
and still score it. Empty predictions or references score 0 on every metric.

Importing this module imports only the standard library; rouge-score, sacrebleu, nltk and numpy
load on first use. METEOR needs NLTK's WordNet and punkt_tab: `make setup` installs them into
./nltk_data, which is added to NLTK's search path when METEOR is first computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bioqa import compat
from bioqa.evaluate.bootstrap import bootstrap_intervals
from bioqa.evaluate.scorers import Job, RougeScorer, bleu_metric, require_nltk_data, score_all, worker_count

Reference = str | Sequence[str]
ALL_METRICS = ("rouge", "bleu", "meteor")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
SCORES_OF = {"rouge": ROUGE_TYPES, "bleu": ("bleu",), "meteor": ("meteor",)}  # what each metric adds, in order
SCORE_NAMES = tuple(name for names in SCORES_OF.values() for name in names)


# ----------------------------------------------------------------------------- input checks


def _check_inputs(predictions: Sequence[str], references: Sequence[Reference]) -> list[list[str]]:
    """Validate inputs; return references as one list of strings per prediction."""
    for name, value in (("predictions", predictions), ("references", references)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list, got {type(value).__name__}")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references differ in length: {len(predictions)} predictions, {len(references)} references"
        )
    if not predictions:
        raise ValueError("predictions is empty: there is nothing to score")
    for i, pred in enumerate(predictions):
        if not isinstance(pred, str):
            raise TypeError(f"predictions[{i}] is {type(pred).__name__}, expected str")
    return [_reference_list(ref, i) for i, ref in enumerate(references)]


def _reference_list(ref: Any, index: int) -> list[str]:
    if isinstance(ref, str):
        return [ref]
    if isinstance(ref, bytes) or not isinstance(ref, Sequence):
        raise TypeError(f"references[{index}] is {type(ref).__name__}, expected str or list of str")
    if not ref:
        raise ValueError(f"references[{index}] is an empty list; give at least one reference")
    for j, item in enumerate(ref):
        if not isinstance(item, str):
            raise TypeError(f"references[{index}][{j}] is {type(item).__name__}, expected str")
    return list(ref)


def _check_metric_names(metrics: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {unknown or list(metrics)}; choose from {list(ALL_METRICS)}")
    return tuple(m for m in ALL_METRICS if m in metrics)


# ----------------------------------------------------------------------------- scoring


@dataclass
class TextScores:
    """Per-example scores of one system, with what corpus BLEU and resampling need.

    `per_example` maps each metric (rouge types, "bleu", "meteor") to one score per example; BLEU
    there is sentence BLEU (sacreBLEU `sentence_bleu`, effective order). `bleu_stats` holds
    sacreBLEU's sufficient statistics per example, from which corpus BLEU is exact for any subset.
    """

    per_example: dict[str, list[float]]
    bleu_stats: list[list[int]]
    bleu_options: tuple
    bleu_signature: str
    prediction_words: list[int]
    reference_words: list[int]

    def __len__(self) -> int:
        return len(self.prediction_words)

    def array(self, name: str):
        """Per-example scores of `name` (or "bleu_stats": examples x sacreBLEU statistics) as a cached numpy array."""
        import numpy as np

        cache = self.__dict__.setdefault("_arrays", {})
        if name not in cache:
            cache[name] = (
                np.asarray(self.bleu_stats, dtype=np.int64)
                if name == "bleu_stats"
                else np.asarray(self.per_example[name])
            )
        return cache[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.per_example)

    def resampled(self, indices: Any) -> dict[str, float]:
        """Every corpus metric over the examples at `indices` (repeats allowed): means, and BLEU from summed
        statistics."""
        return {
            name: self.bleu_from_totals(self.array("bleu_stats")[indices].sum(axis=0).tolist())
            if name == "bleu"
            else float(self.array(name)[indices].mean())
            for name in self.per_example
        }

    def bleu_from_totals(self, totals: Sequence[int]) -> float:
        """Corpus BLEU from summed sacreBLEU statistics (of all examples, or of a resample)."""
        return compat.bleu_from_statistics(bleu_metric(self.bleu_options), list(totals)).score

    def corpus(self) -> dict[str, Any]:
        """Corpus scores: mean ROUGE F1 and METEOR, corpus BLEU, and length statistics in words."""
        result: dict[str, Any] = {}
        for name, values in self.per_example.items():
            if name == "bleu":
                result[name] = self.bleu_from_totals([sum(column) for column in zip(*self.bleu_stats)])
            else:
                result[name] = math.fsum(values) / len(values)
        n = len(self)
        result.update(
            {
                "num_examples": n,
                "pred_words_mean": sum(self.prediction_words) / n,
                "pred_words_max": max(self.prediction_words),
                "ref_words_mean": sum(self.reference_words) / n,
                "empty_predictions": self.prediction_words.count(0),
            }
        )
        if self.bleu_signature:
            result["bleu_signature"] = self.bleu_signature
        return result

    def rows(self) -> list[dict[str, float]]:
        """One dict of scores per example, in input order."""
        names = list(self.per_example)
        return [dict(zip(names, values)) for values in zip(*self.per_example.values())]


def score_predictions(
    predictions: Sequence[str],
    references: Sequence[Reference],
    *,
    metrics: Sequence[str] = ALL_METRICS,
    rouge_types: Sequence[str] = ROUGE_TYPES,
    use_stemmer: bool = False,
    rouge_tokenizer: Callable[[str], list[str]] | None = None,
    bleu_options: Mapping[str, Any] | None = None,
    meteor_alpha: float = 0.9,
    meteor_beta: float = 3.0,
    meteor_gamma: float = 0.5,
    num_workers: int | None = None,
) -> TextScores:
    """Score every prediction against its reference(s); see `compute_metrics` for the arguments."""
    refs = _check_inputs(predictions, references)
    metrics = _check_metric_names(metrics)
    if "meteor" in metrics:
        require_nltk_data()
    rouge = RougeScorer(rouge_types, use_stemmer, rouge_tokenizer) if "rouge" in metrics else None
    options = tuple(sorted((bleu_options or {}).items()))
    job = Job(metrics, rouge, options, (meteor_alpha, meteor_beta, meteor_gamma))
    raw = score_all(job, predictions, refs, worker_count(num_workers, len(predictions)))
    per_example = {name: raw[name] for name in (rouge.rouge_types if rouge else ())}
    signature = ""
    if "bleu" in metrics:
        sentence_bleu = bleu_metric(options, sentence_level=True)
        per_example["bleu"] = [compat.bleu_from_statistics(sentence_bleu, row).score for row in raw["bleu_stats"]]
        signature = _bleu_signature(options, refs)
    if "meteor" in metrics:
        per_example["meteor"] = raw["meteor"]
    return TextScores(
        per_example,
        raw.get("bleu_stats", []),
        options,
        signature,
        [len(p.split()) for p in predictions],
        [max(len(r.split()) for r in rs) for rs in refs],
    )


def _bleu_signature(options: tuple, references: list[list[str]]) -> str:
    """sacreBLEU's signature; nrefs is the reference count, or "var" when it differs per example."""
    bleu = bleu_metric(options)
    counts = {len(refs) for refs in references}
    bleu.num_refs = counts.pop() if len(counts) == 1 else -1  # what sacreBLEU's reference cache sets
    return str(bleu.get_signature())


def compute_metrics(
    predictions: Sequence[str],
    references: Sequence[Reference],
    *,
    bootstrap_samples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Corpus ROUGE, BLEU and METEOR of `predictions` against `references`.

    Args:
        predictions: generated answers, one string each.
        references: for each prediction, a reference string or a list of reference strings.
        metrics: any of "rouge", "bleu", "meteor" (default all; METEOR needs `make setup`'s NLTK data).
        rouge_types: ROUGE variants (default rouge1, rouge2, rougeL, rougeLsum); use_stemmer: Porter
            stemming for ROUGE (default False, as evaluate); rouge_tokenizer: a callable text -> tokens
            replacing rouge_score's default tokenizer.
        bleu_options: keyword arguments of `sacrebleu.metrics.BLEU` (tokenize, lowercase,
            smooth_method, smooth_value, effective_order, force); default sacreBLEU's own.
        meteor_alpha, meteor_beta, meteor_gamma: METEOR parameters (default 0.9, 3, 0.5).
        num_workers: processes for scoring; None picks by input size and CPU count (Linux only).
        bootstrap_samples: if > 0, add seeded percentile bootstrap intervals as `<metric>_ci_low`
            and `<metric>_ci_high`, at `confidence` (default 0.95) with `seed`; None with fewer than
            10 examples (bootstrap.MIN_EXAMPLES), where a bootstrap means nothing.

    Returns:
        rouge1, rouge2, rougeL, rougeLsum (mean per-example F1, 0-1), bleu (corpus BLEU, 0-100),
        meteor (mean, 0-1), num_examples, length statistics in whitespace words (pred_words_mean,
        pred_words_max, ref_words_mean, empty_predictions), bleu_signature, and the intervals.

    Raises:
        ValueError: lengths differ, no examples, an empty reference list or an unknown metric.
        TypeError: a prediction or reference that is not a string (the message names its index).
        MissingNLTKDataError: METEOR asked for without WordNet / punkt_tab installed.
    """
    scores = score_predictions(predictions, references, **options)
    result = scores.corpus()
    if bootstrap_samples > 0:
        intervals = bootstrap_intervals(scores, bootstrap_samples, confidence, seed)  # {} below MIN_EXAMPLES
        for name in scores.names:
            result[f"{name}_ci_low"], result[f"{name}_ci_high"] = intervals.get(name, (None, None))
    return result


def per_example_scores(
    predictions: Sequence[str], references: Sequence[Reference], **options: Any
) -> list[dict[str, float]]:
    """One dict of scores per example (ROUGE F1, sentence BLEU, METEOR), for error analysis."""
    return score_predictions(predictions, references, **options).rows()
