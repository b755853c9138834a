"""Metrics as plug-ins: exact match and token F1 against SQuAD's own script, and what registering a metric does."""

import math

import pytest

import metrics_utils
from bioqa.evaluate.registry import MetricScores, Score, metrics_reporting, score_info

# (prediction, references, exact match, token F1), both 0-100: computed with the official SQuAD v1.1 evaluation
# script as the Hugging Face `evaluate` "squad" metric ships it (metrics/squad/compute_score.py, evaluate commit
# b6e7c3b0ed02444f1b3f4f1eb48a39f27af321ec: normalize_answer, exact_match_score, f1_score and
# metric_max_over_ground_truths, each x100).
SQUAD_CASES = [
    ("Interleukin-6", ["interleukin 6"], 0.0, 0.0),
    ("The IL-6 cytokine.", ["IL-6 cytokine"], 100.0, 100.0),
    ("an aspirin a day", ["Aspirin"], 0.0, 66.66666666666666),
    ("Yes, it does.", ["yes"], 0.0, 50.0),
    (
        "Metformin lowers blood glucose",
        ["Metformin lowers hepatic glucose output", "It lowers blood glucose"],
        0.0,
        75.0,
    ),
    ("the the the", ["the"], 100.0, 0.0),
    ("", [""], 100.0, 0.0),
    ("", ["insulin"], 0.0, 0.0),
    ("insulin insulin", ["insulin"], 0.0, 66.66666666666666),
    ("Théophylline", ["theophylline"], 0.0, 0.0),
    ("ACE inhibitors (e.g., ramipril)", ["ACE-inhibitors e.g. ramipril"], 0.0, 57.14285714285715),
    ("Anthem", ["anthem the"], 100.0, 100.0),
    ("BRCA1 and BRCA2 genes", ["brca2 and brca1"], 0.0, 85.71428571428571),
    ("no", ["maybe", "No."], 100.0, 100.0),
]
SQUAD_CORPUS = (35.714285714285715, 50.08503401360543)  # the same script's compute_score over all 14


def test_exact_match_and_token_f1_equal_squads_script():
    predictions = [case[0] for case in SQUAD_CASES]
    references = [case[1] for case in SQUAD_CASES]
    scores = metrics_utils.score_predictions(predictions, references, metrics=("exact_match", "token_f1"))
    assert scores.per_example["exact_match"] == [case[2] for case in SQUAD_CASES]
    assert scores.per_example["token_f1"] == pytest.approx([case[3] for case in SQUAD_CASES], abs=1e-12)
    corpus = scores.corpus()
    assert (corpus["exact_match"], corpus["token_f1"]) == pytest.approx(SQUAD_CORPUS, abs=1e-12)
    assert "rougeL" not in corpus and "bleu_signature" not in corpus  # only what was asked for


@pytest.fixture
def registered_metric():
    """A metric a notebook would write: the share of the answer's words found in a reference."""

    def overlap(prediction, references):
        words = set(prediction.lower().split())
        return max(len(words & set(r.lower().split())) / len(words) if words else 0.0 for r in references)

    metric = metrics_utils.register_metric(metrics_utils.mean_metric("word_overlap", overlap, title="Word overlap"))
    yield metric, overlap
    metrics_utils.unregister_metric("word_overlap")


def test_a_registered_metric_is_scored_named_and_bootstrapped_like_a_built_in(registered_metric):
    _, overlap = registered_metric
    preds = [f"insulin lowers glucose {i}" for i in range(12)]
    refs = [("insulin lowers blood glucose" if i % 3 else "glucagon raises glucose") for i in range(12)]
    result = metrics_utils.compute_metrics(preds, refs, metrics=["rouge", "word_overlap"], bootstrap_samples=200)
    expected = [overlap(p, [r]) for p, r in zip(preds, refs)]
    assert result["word_overlap"] == pytest.approx(math.fsum(expected) / 12)
    assert result["word_overlap_ci_low"] < result["word_overlap"] < result["word_overlap_ci_high"]
    assert "word_overlap" in metrics_utils.metric_names()
    assert score_info("word_overlap") == Score("word_overlap", "Word overlap", 1.0)
    assert metrics_reporting(["id", "prediction", "word_overlap", "bleu"]) == ("bleu", "word_overlap")


def test_a_metric_with_its_own_corpus_rule_is_resampled_by_it():
    """The bootstrap draws resamples through the metric's corpus rule, not a mean of per-example scores."""

    class Longest(metrics_utils.Metric):
        name, scores = "longest", (Score("longest", "Longest answer", 100.0),)

        def score(self, predictions, references, **options):
            lengths = [float(len(p.split())) for p in predictions]

            class MaxScores(MetricScores):
                def corpus(self, indices=None):
                    values = self.per_example["longest"]
                    return {"longest": max(values if indices is None else [values[i] for i in indices])}

            return MaxScores({"longest": lengths})

    preds = ["a " * n for n in range(1, 13)]
    result = metrics_utils.compute_metrics(preds, ["a"] * 12, metrics=[Longest()], bootstrap_samples=100)
    assert result["longest"] == 12.0  # the maximum, where a mean would give 6.5
    assert result["longest_ci_high"] == 12.0 and result["longest_ci_low"] < 12.0


def test_registration_refuses_what_would_collide_or_score_nothing(registered_metric):
    with pytest.raises(ValueError, match="'word_overlap' is registered already; pass replace=True"):
        metrics_utils.register_metric(metrics_utils.mean_metric("word_overlap", lambda p, r: 0.0))
    with pytest.raises(ValueError, match=r"names are taken: rougeL \(used by rouge\)"):
        metrics_utils.register_metric(metrics_utils.mean_metric("rougeL", lambda p, r: 0.0))
    with pytest.raises(ValueError, match=r"names are taken: accuracy \(used by labels\)"):
        metrics_utils.register_metric(metrics_utils.mean_metric("accuracy", lambda p, r: 0.0))
    with pytest.raises(ValueError, match=r"names are taken: prediction \(used by prediction rows\)"):
        metrics_utils.register_metric(metrics_utils.mean_metric("prediction", lambda p, r: 0.0))
    with pytest.raises(ValueError, match="is not a metric: subclass"):
        metrics_utils.register_metric(lambda p, r: 0.0)
    replaced = metrics_utils.register_metric(metrics_utils.mean_metric("word_overlap", lambda p, r: 1.0), replace=True)
    assert metrics_utils.compute_metrics(["x"], ["y"], metrics=["word_overlap"])["word_overlap"] == 1.0
    assert replaced.scores[0].title == "word_overlap"


def test_unknown_metrics_and_options_are_named():
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['rogue'\]; choose from \['rouge', 'bleu', 'meteor'"):
        metrics_utils.compute_metrics(["a"], ["a"], metrics=["rogue"])
    with pytest.raises(TypeError, match="unexpected keyword argument.*use_stemer"):
        metrics_utils.compute_metrics(["a"], ["a"], metrics=["rouge"], use_stemer=True)
    # an option another registered metric reads is accepted, as when one call's options serve several metric sets
    assert metrics_utils.compute_metrics(["a"], ["a"], metrics=["rouge"], bleu_options={"lowercase": True})["rouge1"]
