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
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

from bioqa.scorers import (MissingNLTKDataError, NLTK_DATA_DIR, Job, RougeScorer, bleu_metric,
                           nltk_data_available, require_nltk_data, score_all, worker_count)

__all__ = [
    "ALL_METRICS", "ROUGE_TYPES", "NLTK_DATA_DIR", "MissingNLTKDataError", "Scores",
    "compute_metrics", "score_predictions", "per_example_scores", "bootstrap_intervals", "paired_bootstrap",
    "postprocess_text", "trainer_compute_metrics", "nltk_data_available",
]

Reference = Union[str, Sequence[str]]
ALL_METRICS = ("rouge", "bleu", "meteor")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
DEFAULT_SPECIAL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<s>", "</s>", "<pad>", "<unk>",
)


# ----------------------------------------------------------------------------- input checks


def _check_inputs(predictions: Sequence[str], references: Sequence[Reference]) -> list[list[str]]:
    """Validate inputs; return references as one list of strings per prediction."""
    for name, value in (("predictions", predictions), ("references", references)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list, got {type(value).__name__}")
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length: "
                         f"{len(predictions)} predictions, {len(references)} references")
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
class Scores:
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
            cache[name] = np.asarray(self.bleu_stats, dtype=np.int64) if name == "bleu_stats" else np.asarray(self.per_example[name])
        return cache[name]

    def bleu_from_totals(self, totals: Sequence[int]) -> float:
        """Corpus BLEU from summed sacreBLEU statistics (of all examples, or of a resample)."""
        return bleu_metric(self.bleu_options)._compute_score_from_stats(list(totals)).score

    def corpus(self) -> dict[str, Any]:
        """Corpus scores: mean ROUGE F1 and METEOR, corpus BLEU, and length statistics in words."""
        result: dict[str, Any] = {}
        for name, values in self.per_example.items():
            if name == "bleu":
                result[name] = self.bleu_from_totals([sum(column) for column in zip(*self.bleu_stats)])
            else:
                result[name] = math.fsum(values) / len(values)
        n = len(self)
        result.update({
            "num_examples": n,
            "pred_words_mean": sum(self.prediction_words) / n,
            "pred_words_max": max(self.prediction_words),
            "ref_words_mean": sum(self.reference_words) / n,
            "empty_predictions": self.prediction_words.count(0),
        })
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
) -> Scores:
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
        per_example["bleu"] = [sentence_bleu._compute_score_from_stats(row).score for row in raw["bleu_stats"]]
        signature = _bleu_signature(options, refs)
    if "meteor" in metrics:
        per_example["meteor"] = raw["meteor"]
    return Scores(per_example, raw.get("bleu_stats", []), options, signature,
                  [len(p.split()) for p in predictions], [max(len(r.split()) for r in rs) for rs in refs])


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
            and `<metric>_ci_high`, at `confidence` (default 0.95) with `seed`.

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
        for name, (low, high) in bootstrap_intervals(scores, bootstrap_samples, confidence, seed).items():
            result[f"{name}_ci_low"], result[f"{name}_ci_high"] = low, high
    return result


def per_example_scores(predictions: Sequence[str], references: Sequence[Reference], **options: Any) -> list[dict[str, float]]:
    """One dict of scores per example (ROUGE F1, sentence BLEU, METEOR), for error analysis."""
    return score_predictions(predictions, references, **options).rows()


def _resampled(scores: Scores, indices: Any) -> dict[str, float]:
    """Every corpus metric over the examples at `indices` (repeats allowed)."""
    return {name: scores.bleu_from_totals(scores.array("bleu_stats")[indices].sum(axis=0).tolist()) if name == "bleu"
            else float(scores.array(name)[indices].mean()) for name in scores.per_example}


def bootstrap_intervals(scores: Scores, samples: int = 1000, confidence: float = 0.95,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Seeded percentile bootstrap intervals of each corpus metric, resampling examples.

    Each resample draws len(scores) example indices with replacement; ROUGE and METEOR are the
    mean over the resample and BLEU is recomputed from the resample's summed sacreBLEU statistics.
    """
    import numpy as np

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    draws = [_resampled(scores, rng.integers(0, len(scores), size=len(scores))) for _ in range(samples)]
    tail = (1 - confidence) / 2 * 100
    return {name: tuple(float(x) for x in np.percentile([d[name] for d in draws], [tail, 100 - tail]))
            for name in scores.per_example}


def paired_bootstrap(baseline: Scores, candidate: Scores, samples: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Paired bootstrap test of candidate - baseline on the same examples, for every metric.

    Both systems are scored on the same resampled example indices. For each metric: `difference`
    (candidate - baseline on all examples), its percentile interval (`ci_low`, `ci_high`) and a
    two-sided `p_value` computed as sacreBLEU's paired bootstrap test does (Koehn 2004, as in
    Moses): the resampled absolute differences are centred on their mean, and p = (c + 1) / (n + 1)
    with c the resamples whose centred difference reaches the observed one. sacreBLEU counts only
    strictly greater ones (c uses >), which gives identical systems p = 1/(n + 1); ties count here
    (>=), so identical systems get p = 1. BLEU is recomputed per resample from sacreBLEU statistics;
    ROUGE and METEOR are means of per-example scores.
    """
    import numpy as np

    if len(baseline) != len(candidate):
        raise ValueError(f"paired test needs the same examples: {len(baseline)} baseline, {len(candidate)} candidate")
    rng = np.random.default_rng(seed)
    names = [n for n in baseline.per_example if n in candidate.per_example]
    observed = {n: _resampled(candidate, slice(None))[n] - _resampled(baseline, slice(None))[n] for n in names}
    diffs: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(samples):
        idx = rng.integers(0, len(baseline), size=len(baseline))
        a, b = _resampled(baseline, idx), _resampled(candidate, idx)
        for n in names:
            diffs[n].append(b[n] - a[n])
    tail = (1 - confidence) / 2 * 100
    result = {}
    for n in names:
        values = np.asarray(diffs[n])
        centred = np.abs(values) - np.abs(values).mean()
        p_value = (np.sum(centred >= abs(observed[n]) - 1e-12) + 1) / (samples + 1)
        low, high = np.percentile(values, [tail, 100 - tail])
        result[n] = {"difference": observed[n], "ci_low": float(low), "ci_high": float(high), "p_value": float(p_value)}
    return result


# ----------------------------------------------------------------------------- generated text


def postprocess_text(
    text: str,
    *,
    prompt: str | None = None,
    stop_strings: Sequence[str] = (),
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
) -> str:
    """Clean one generated answer before scoring.

    In order: normalise newlines (CRLF/CR to LF), drop an echoed `prompt` at the start (also when
    the echo lacks the prompt's special tokens), cut at the first of `stop_strings`, remove
    `special_tokens` (default: common chat and EOS markers; pass `tokenizer.all_special_tokens`
    for a given model), strip trailing spaces on each line, collapse runs of blank lines, and
    strip surrounding whitespace.
    """
    text = _normalise_newlines(text)
    if prompt:
        text = _drop_echo(text, _normalise_newlines(prompt), special_tokens)
    cuts = [text.find(stop) for stop in stop_strings if stop and stop in text]
    if cuts:
        text = text[:min(cuts)]
    text = _remove_all(text, special_tokens)
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _remove_all(text: str, pieces: Sequence[str]) -> str:
    for piece in pieces:
        if piece:
            text = text.replace(piece, "")
    return text


def _drop_echo(text: str, prompt: str, special_tokens: Sequence[str]) -> str:
    stripped = text.lstrip()
    if stripped.startswith(prompt.strip()):
        return stripped[len(prompt.strip()):]
    plain_text, plain_prompt = _remove_all(stripped, special_tokens), _remove_all(prompt, special_tokens).strip()
    if plain_prompt and plain_text.lstrip().startswith(plain_prompt):
        return plain_text.lstrip()[len(plain_prompt):]
    return text


def trainer_compute_metrics(tokenizer: Any, *, ignore_index: int = -100, **options: Any) -> Callable[[Any], dict]:
    """A `compute_metrics` for `transformers.Trainer` / `Seq2SeqTrainer(predict_with_generate=True)`.

    The returned function takes an `EvalPrediction` whose predictions are generated token ids,
    replaces `ignore_index` and other negative ids by the pad token, decodes predictions and labels
    without special tokens, cleans them with `postprocess_text`, and returns the numeric results of
    `compute_metrics(**options)` plus `gen_len`, the mean count of non-pad generated tokens.
    """
    def compute(eval_prediction: Any) -> dict[str, float]:
        import numpy as np

        predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        if predictions.ndim != 2 or not np.issubdtype(predictions.dtype, np.integer):
            raise ValueError("trainer_compute_metrics needs generated token ids (batch x length); got logits "
                             "or another array: use predict_with_generate=True or the toolkit's generation callback")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        predictions = np.where(predictions < 0, pad, predictions)
        labels = np.where((labels == ignore_index) | (labels < 0), pad, labels)
        decoded = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        targets = tokenizer.batch_decode(labels, skip_special_tokens=True)
        result = compute_metrics([postprocess_text(t) for t in decoded], [postprocess_text(t) for t in targets], **options)
        result = {key: value for key, value in result.items() if isinstance(value, (int, float))}
        result["gen_len"] = float(np.mean(np.count_nonzero(predictions != pad, axis=1)))
        return result

    return compute
