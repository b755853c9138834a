"""metrics_utils as a user calls it: literal values on biomedical text, edge cases, bad input,
bootstrap intervals, NLTK data errors, and what importing it costs."""

import math
import random
import subprocess
import sys

import pytest

import evaluate_reference as reference
import metrics_utils


def score(pred, ref, **options):
    return metrics_utils.compute_metrics([pred], [ref], **options)


# ----------------------------------------------------------------------------- literal values


def test_biomedical_abbreviation_hand_computed():
    # ROUGE tokens: [il 6 levels rose after surgery] vs [il 6 levels fell after surgery]
    result = score("IL-6 levels rose after surgery", "IL-6 levels fell after surgery")
    assert result["rouge1"] == pytest.approx(5 / 6)
    assert result["rouge2"] == pytest.approx(3 / 5)
    assert result["rougeL"] == pytest.approx(5 / 6)
    assert result["rougeLsum"] == pytest.approx(5 / 6)


def test_greek_letter_is_dropped_by_rouge_tokenizer():
    # "β-blockers" -> [blockers]: P = 3/3, R = 3/4, F1 = 6/7
    result = score("β-blockers reduce mortality", "Beta-blockers reduce mortality", metrics=("rouge",))
    assert result["rouge1"] == pytest.approx(6 / 7)


def test_p_value_and_units_identical_answers():
    # 13a splits "<" and "/" but keeps "0.05"; METEOR: 5 tokens in one chunk -> 1 - 0.5 * (1/5)^3
    result = score("significant at p < 0.05", "significant at p < 0.05")
    assert (result["rouge1"], result["rougeL"], result["bleu"]) == pytest.approx((1.0, 1.0, 100.0))
    assert result["meteor"] == pytest.approx(0.996)
    spaced = score("5 mg/kg daily for 7 days", "5 mg / kg daily for 7 days", metrics=("rouge", "bleu"))
    assert (spaced["rouge1"], spaced["bleu"]) == pytest.approx((1.0, 100.0))


def test_text_without_ascii_letters_is_documented_behaviour():
    # rouge_score keeps only [a-z0-9]: no tokens, ROUGE 0; BLEU and METEOR see four identical words
    result = score("αβγ δεζ ηθι κλμ", "αβγ δεζ ηθι κλμ")
    assert result["rouge1"] == result["rougeL"] == result["rougeLsum"] == 0.0
    assert result["bleu"] == pytest.approx(100.0)
    assert result["meteor"] == pytest.approx(1 - 0.5 * (1 / 4) ** 3)


@pytest.mark.parametrize(
    "pred, ref", [("", "cells were counted"), ("cells were counted", ""), ("", ""), ("  \n ", "x")]
)
def test_empty_text_scores_zero(pred, ref):
    result = score(pred, ref)
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "meteor"):
        assert result[name] == 0.0, name


def test_multi_reference_takes_the_best_reference():
    result = score("the cat sat down", ["a dog barked", "the cat sat down"])
    assert (result["rouge1"], result["rougeL"], result["bleu"]) == pytest.approx((1.0, 1.0, 100.0))
    assert result["meteor"] == pytest.approx(1 - 0.5 * (1 / 4) ** 3)


def test_unequal_reference_counts_work_and_show_in_signature():
    preds = ["insulin lowers blood glucose", "aspirin inhibits cyclooxygenase enzymes"]
    refs = [["insulin lowers blood glucose"], ["aspirin blocks COX enzymes", "aspirin inhibits cyclooxygenase enzymes"]]
    result = metrics_utils.compute_metrics(preds, refs)
    assert result["bleu"] == pytest.approx(100.0)
    assert result["bleu_signature"].startswith("nrefs:var|")
    assert metrics_utils.compute_metrics(preds[:1], refs[:1])["bleu_signature"].startswith("nrefs:1|")


def test_long_answers_of_600_words_equal_library_calls():
    rng = random.Random(0)
    words = "the patient received 5 mg of drug and glucose fell while IL-6 rose in plasma".split()
    preds = [" ".join(rng.choice(words) for _ in range(600)) for _ in range(3)]
    refs = [" ".join(rng.choice(words) for _ in range(600)) for _ in range(3)]
    ours = metrics_utils.compute_metrics(preds, refs)
    expected = {
        **reference.mean_rouge(preds, refs),
        "bleu": reference.evaluate_sacrebleu(preds, refs),
        "meteor": reference.evaluate_meteor(preds, refs),
    }
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_length_statistics_are_in_words():
    result = metrics_utils.compute_metrics(["a b c", ""], ["a b", "c d e f"], metrics=("rouge",))
    assert result["num_examples"] == 2
    assert result["pred_words_mean"] == 1.5 and result["pred_words_max"] == 3
    assert result["ref_words_mean"] == 3.0 and result["empty_predictions"] == 1


def test_per_example_rows_follow_input_order():
    rows = metrics_utils.per_example_scores(["a b c d", "x"], ["a b c d", "y"], metrics=("rouge", "bleu"))
    assert [row["rouge1"] for row in rows] == [1.0, 0.0]
    assert rows[0]["bleu"] == pytest.approx(100.0) and rows[1]["bleu"] == 0.0
    assert set(rows[0]) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"}


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "preds, refs, error, fragment",
    [
        (["a", "b", "c"], ["a", "b"], ValueError, "3 predictions, 2 references"),
        (["a", None], ["a", "b"], TypeError, "predictions[1] is NoneType"),
        (["a", "b", "c"], ["a", "b", 5], TypeError, "references[2] is int"),
        (["a", "b"], ["a", ["b", None]], TypeError, "references[1][1] is NoneType"),
        (["a"], [[]], ValueError, "references[0] is an empty list"),
        ("abc", ["a", "b", "c"], TypeError, "predictions must be a list, got str"),
        ([], [], ValueError, "nothing to score"),
    ],
)
def test_bad_input_names_the_problem(preds, refs, error, fragment):
    with pytest.raises(error) as info:
        metrics_utils.compute_metrics(preds, refs)
    assert fragment in str(info.value)


def test_unknown_metric_or_rouge_type():
    with pytest.raises(ValueError, match="unknown metric"):
        metrics_utils.compute_metrics(["a"], ["a"], metrics=("bertscore",))
    with pytest.raises(ValueError, match="unknown ROUGE type 'rougeX'"):
        metrics_utils.compute_metrics(["a"], ["a"], metrics=("rouge",), rouge_types=("rougeX",))


def test_missing_nltk_data_names_the_setup_command(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setenv("BIOQA_NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(metrics_utils.MissingNLTKDataError, match="make setup.*metrics=\\('rouge', 'bleu'\\)"):
        metrics_utils.compute_metrics(["a"], ["a"])
    assert metrics_utils.compute_metrics(["a b c d"], ["a b c d"], metrics=("rouge", "bleu"))["bleu"] == pytest.approx(
        100.0
    )


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_intervals_are_seeded_and_bracket_the_score():
    rng = random.Random(1)
    words = "dose response insulin glucose patients trial risk".split()
    preds = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(60)]
    refs = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(60)]
    first = metrics_utils.compute_metrics(preds, refs, bootstrap_samples=200, seed=3)
    assert first == metrics_utils.compute_metrics(preds, refs, bootstrap_samples=200, seed=3)
    other = metrics_utils.compute_metrics(preds, refs, bootstrap_samples=200, seed=4)
    assert other["rougeL_ci_low"] != first["rougeL_ci_low"]
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "meteor"):
        assert first[f"{name}_ci_low"] <= first[name] <= first[f"{name}_ci_high"], name
        assert first[f"{name}_ci_low"] < first[f"{name}_ci_high"], name


def test_bootstrap_bleu_is_recomputed_from_resampled_statistics():
    import numpy as np
    import sacrebleu

    predictions = ["a b c d", "e f g h"] * 5
    references = ["a b c d", "x y z w"] * 5
    scores = metrics_utils.score_predictions(predictions, references, metrics=("bleu",))
    low, high = metrics_utils.bootstrap_intervals(scores, samples=300, seed=0)["bleu"]
    rng, corpus = np.random.default_rng(0), []  # the same draws, each resample's corpus BLEU from sacreBLEU itself
    for _ in range(300):
        idx = rng.integers(0, 10, size=10)
        corpus.append(sacrebleu.corpus_bleu([predictions[i] for i in idx], [[references[i] for i in idx]]).score)
    assert (low, high) == pytest.approx(tuple(np.percentile(corpus, [2.5, 97.5])))
    with pytest.raises(ValueError, match="confidence"):
        metrics_utils.bootstrap_intervals(scores, confidence=95)


# ----------------------------------------------------------------------------- import cost


def test_import_loads_no_heavy_library():
    code = (
        "import sys, metrics_utils; heavy = {'torch', 'transformers', 'nltk', 'numpy', 'sacrebleu', "
        "'rouge_score'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_default_scale_of_each_metric():
    result = score("the same answer text here", "the same answer text here")
    assert result["rougeL"] == 1.0 and result["bleu"] == pytest.approx(100.0) and result["meteor"] <= 1.0
    assert not math.isnan(result["meteor"])
