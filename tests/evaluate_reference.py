"""The Hugging Face `evaluate` 0.4.6 metric computations, spelled out with the same library calls.

`evaluate.load("rouge" | "sacrebleu" | "meteor")` fetches its scripts from the Hub, which tests and
benchmarks cannot reach offline. These functions make exactly the calls those scripts' `_compute`
methods make (rouge-score scorer + BootstrapAggregator, sacrebleu.corpus_bleu over transposed
reference streams, nltk single/multi METEOR over word_tokenize), without evaluate's Arrow caching
around them, so they are the straightforward baseline that `metrics_utils` must equal and beat.
"""

from __future__ import annotations

import numpy as np


def evaluate_rouge(predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False):
    from rouge_score import rouge_scorer, scoring

    rouge_types = rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    multi_ref = isinstance(references[0], list)
    scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
    scores = [scorer.score_multi(r, p) if multi_ref else scorer.score(r, p) for r, p in zip(references, predictions)]
    if not use_aggregator:
        return {key: [s[key].fmeasure for s in scores] for key in rouge_types}
    aggregator = scoring.BootstrapAggregator()
    for score in scores:
        aggregator.add_scores(score)
    return {key: value.mid.fmeasure for key, value in aggregator.aggregate().items()}


def mean_rouge(predictions, references, **kwargs):
    """Per-example ROUGE F1 averaged exactly (the deterministic aggregate metrics_utils reports)."""
    per_example = evaluate_rouge(predictions, references, use_aggregator=False, **kwargs)
    return {key: float(np.mean(values)) for key, values in per_example.items()}


def evaluate_sacrebleu(predictions, references, **kwargs):
    import sacrebleu

    if isinstance(references[0], str):
        references = [[ref] for ref in references]
    per_prediction = len(references[0])
    if any(len(refs) != per_prediction for refs in references):
        raise ValueError("Sacrebleu requires the same number of references for each prediction")
    streams = [[refs[i] for refs in references] for i in range(per_prediction)]
    return sacrebleu.corpus_bleu(predictions, streams, **kwargs).score


def evaluate_meteor(predictions, references, alpha=0.9, beta=3, gamma=0.5):
    from nltk import word_tokenize
    from nltk.translate import meteor_score

    if isinstance(references[0], list):
        scores = [
            meteor_score.meteor_score(
                [word_tokenize(r) for r in refs], word_tokenize(pred), alpha=alpha, beta=beta, gamma=gamma
            )
            for refs, pred in zip(references, predictions)
        ]
    else:
        scores = [
            meteor_score.single_meteor_score(
                word_tokenize(ref), word_tokenize(pred), alpha=alpha, beta=beta, gamma=gamma
            )
            for ref, pred in zip(references, predictions)
        ]
    return float(np.mean(scores))
