"""Labels of yes/no/maybe and multiple-choice answers: extraction, metrics against scikit-learn, the
bootstrap over labels, McNemar, options and targets."""

import random
import re

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

import metrics_utils
from bioqa.data import labels as L
from bioqa.evaluate.bootstrap import bootstrap_intervals, paired_bootstrap

YES_NO_MAYBE = ["yes", "no", "maybe"]
ABCD = ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Yes.", "yes"),
        ("yes, the data show it", "yes"),
        ("No significant difference was found.", "no"),
        ("MAYBE", "maybe"),
        ("**Yes**", "yes"),
        ("Answer: no", "no"),
        ("The answer is maybe.", "maybe"),
        ('"Yes" - the trial met its end point', "yes"),
        ("Not clear from the abstract.", None),  # "no" must end at a word boundary
        ("None of the patients improved.", None),
        ("Yesterday's results", None),
        ("The results suggest yes.", None),  # the label must start the answer
        ("", None),
        ("...", None),
        ("Answers vary between studies.", None),  # "Answers" is not "Answer:"
    ],
)
def test_extract_label_yes_no_maybe(answer, expected):
    assert metrics_utils.extract_label(answer, YES_NO_MAYBE) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("b) Insulin", "B"),
        ("Answer: b", "B"),
        ("The correct answer is C", "C"),
        ("[D] because ...", "D"),
        ("Glucagon", "C"),  # an option's text reads as its letter
        ("glucagon raises blood glucose", "C"),
        ("E", None),  # not an option
        ("Because insulin ...", None),
        ("BC", None),
    ],
)
def test_extract_label_multiple_choice(answer, expected):
    options = {"A": "Cortisol", "B": "Insulin", "C": "Glucagon", "D": "Adrenaline"}
    assert metrics_utils.extract_label(answer, ABCD, options) == expected


def test_an_option_text_that_starts_like_a_letter_reads_as_that_option():
    options = {"A": "Aspirin", "B": "A beta blocker", "C": "Heparin", "D": "Warfarin"}
    assert L.extract_label("A beta blocker, because ...", ABCD, options) == "B"
    assert L.extract_label("A. Aspirin", ABCD, options) == "A"


def _sklearn(predicted, gold, labels):
    outside = "<unparsed>"  # scikit-learn needs a value: one outside the labels, as an unparsed answer is
    y_pred = [outside if p is None else p for p in predicted]
    return {
        "accuracy": accuracy_score(gold, y_pred),
        "macro_f1": f1_score(gold, y_pred, average="macro", labels=labels, zero_division=0),
        "precision": precision_score(gold, y_pred, average=None, labels=labels, zero_division=0),
        "recall": recall_score(gold, y_pred, average=None, labels=labels, zero_division=0),
    }


@pytest.mark.parametrize("seed", range(30))
def test_label_metrics_equal_scikit_learn_on_random_labels(seed):
    rng = random.Random(seed)
    labels = rng.choice([YES_NO_MAYBE, ABCD, ["yes", "no"]])
    n = rng.randint(1, 60)
    gold = [rng.choice(labels[: rng.randint(1, len(labels))]) for _ in range(n)]  # some labels may never occur
    predicted = [rng.choice([*labels, None]) if rng.random() < 0.7 else g for g in gold]
    ours, reference = metrics_utils.label_metrics(predicted, gold, labels), _sklearn(predicted, gold, labels)
    assert ours["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-12)
    assert ours["macro_f1"] == pytest.approx(reference["macro_f1"], abs=1e-12)
    for i, label in enumerate(labels):
        assert ours["per_label"][label]["precision"] == pytest.approx(reference["precision"][i], abs=1e-12)
        assert ours["per_label"][label]["recall"] == pytest.approx(reference["recall"][i], abs=1e-12)
    assert ours["unparsed"] == predicted.count(None) / n
    assert sum(sum(row.values()) for row in ours["confusion"].values()) == n
    resampled = L.LabelScores(predicted, gold, tuple(labels)).resampled(np.arange(n))
    assert resampled["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-12)
    assert resampled["macro_f1"] == pytest.approx(reference["macro_f1"], abs=1e-12)


def test_resampled_label_metrics_equal_scikit_learn_on_the_resample():
    rng = np.random.default_rng(3)
    gold = list(rng.choice(YES_NO_MAYBE, 40))
    predicted = [None if x < 0.1 else g if x < 0.6 else "maybe" for g, x in zip(gold, rng.random(40))]
    scores = L.LabelScores(predicted, gold, tuple(YES_NO_MAYBE))
    for _ in range(5):
        idx = rng.integers(0, 40, 40)
        expected = _sklearn([predicted[i] for i in idx], [gold[i] for i in idx], YES_NO_MAYBE)
        got = scores.resampled(idx)
        assert got["accuracy"] == pytest.approx(expected["accuracy"])
        assert got["macro_f1"] == pytest.approx(expected["macro_f1"])


def test_confusion_matrix_and_unparsed_are_counted_by_gold_row():
    result = L.label_metrics(["yes", None, "no", "yes"], ["yes", "yes", "no", "no"], ["yes", "no"])
    assert result["confusion"] == {"yes": {"yes": 1, "no": 0, "unparsed": 1}, "no": {"yes": 1, "no": 1, "unparsed": 0}}
    assert result["unparsed"] == 0.25 and result["accuracy"] == 0.5


def test_label_metrics_refuse_labels_outside_the_set():
    with pytest.raises(ValueError, match=r"gold\[1\] is 'perhaps'"):
        L.label_metrics(["yes", "no"], ["yes", "perhaps"], ["yes", "no"])
    with pytest.raises(ValueError, match="differ in length"):
        L.label_metrics(["yes"], ["yes", "no"], ["yes", "no"])


def test_bootstrap_intervals_and_paired_test_work_on_labels():
    gold = ["yes"] * 30 + ["no"] * 30
    weak = L.LabelScores(["yes"] * 60, gold, ("yes", "no"))  # always yes: accuracy 0.5
    strong = L.LabelScores(gold[:50] + ["yes"] * 10, gold, ("yes", "no"))
    intervals = bootstrap_intervals(strong, 300, seed=1)
    assert intervals["accuracy"][0] < strong.corpus()["accuracy"] < intervals["accuracy"][1]
    test = paired_bootstrap(weak, strong, 300, seed=1)
    assert test["accuracy"]["difference"] == pytest.approx(50 / 60 - 0.5)
    assert test["accuracy"]["ci_low"] > 0 and test["accuracy"]["p_value"] < 0.01
    assert test["macro_f1"]["difference"] > 0


def test_mcnemar_exact_against_a_hand_computed_case():
    # Discordant pairs: 1 question only the baseline got right, 6 only the candidate. Two-sided exact
    # binomial test with n = 7: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125.
    baseline = [True] * 10 + [True] + [False] * 6 + [False] * 3
    candidate = [True] * 10 + [False] + [True] * 6 + [False] * 3
    result = metrics_utils.mcnemar_exact(baseline, candidate)
    assert result == {"baseline_only_right": 1, "candidate_only_right": 6, "p_value": pytest.approx(0.125)}
    assert L.mcnemar_exact(candidate, candidate)["p_value"] == 1.0  # no discordant pairs
    assert L.mcnemar_exact([True] * 3, [False] * 3)["p_value"] == pytest.approx(0.25)  # 2 * 1/8


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["Insulin", "Glucagon"], {"A": "Insulin", "B": "Glucagon"}),
        ({"B": "Glucagon", "A": "Insulin"}, {"A": "Insulin", "B": "Glucagon"}),
        ({"a": "Insulin", "b": "Glucagon"}, {"A": "Insulin", "B": "Glucagon"}),
        ({"opa": "Insulin", "opb": "Glucagon", "opc": 5}, {"A": "Insulin", "B": "Glucagon", "C": "5"}),
    ],
)
def test_options_are_lettered(value, expected):
    assert L.as_options(value) == expected


@pytest.mark.parametrize(
    "value, why",
    [
        (["only one"], "1 option(s); a multiple-choice question needs at least two"),
        ([], "0 option(s)"),
        (["a", ""], "option B is '', not a text"),
        (["a", None], "option B is None, not a text"),
        ("a string", "options must be a list or an object keyed by letter, not str"),
        (["x"] * 27, "27 options; at most 26 can be lettered"),
    ],
)
def test_bad_options_are_refused(value, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        L.as_options(value)


def test_options_render_as_lettered_lines_under_the_question():
    options = L.as_options(["Insulin", "Glucagon"])
    assert L.question_with_options("Which hormone lowers glucose?", options) == (
        "Which hormone lowers glucose?\nA. Insulin\nB. Glucagon"
    )
    assert L.question_with_options("Q?", None) == "Q?"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("b", "B"), ("B", "B"), (1, "B"), ("1", "B"), ("Glucagon", "B"), ("glucagon", "B")],
)
def test_multiple_choice_labels_normalise_to_the_letter(value, expected):
    options = {"A": "Insulin", "B": "Glucagon", "C": "Cortisol", "D": "Adrenaline"}
    assert L.normalise_label(value, ABCD, options) == expected


def test_yes_no_labels_normalise_case_and_booleans():
    assert L.normalise_label(" Yes ", YES_NO_MAYBE) == "yes"
    assert L.normalise_label(False, ["yes", "no"]) == "no"
    with pytest.raises(ValueError, match="'perhaps' is not one of the labels yes, no, maybe"):
        L.normalise_label("perhaps", YES_NO_MAYBE)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "0 label"),
        (["yes"], "1 label"),
        (["yes", " "], "an empty label"),
        (["yes", "Yes"], "read the same"),
        (["no", "no"], "given twice"),
    ],
)
def test_bad_label_sets_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        L.check_label_set(labels)


def test_targets_and_stripping_the_label_again():
    assert L.target_text("label", "yes", "It does.") == "yes"
    assert L.target_text("answer", "yes", "It does.") == "It does."
    written = L.target_text("label_then_answer", "yes", "It does.")
    assert written == "Yes. It does."
    assert L.extract_label(written, YES_NO_MAYBE) == "yes"
    assert L.strip_label(written, YES_NO_MAYBE) == "It does."
    assert L.strip_label("Answer: no, it does not", YES_NO_MAYBE) == "it does not"
    assert L.strip_label("Unclear.", YES_NO_MAYBE) == "Unclear."


def test_importing_labels_loads_no_numpy_or_torch():
    import subprocess
    import sys

    code = "import sys, bioqa.data.labels; print(any(m.split('.')[0] in ('numpy', 'torch') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize(
    ("answer", "labels", "expected"),
    [
        ("+", ["+", "-"], "+"),  # punctuation a label starts with is never stripped from the answer
        ("**-**", ["+", "-"], "-"),
        ("- because the test was negative", ["+", "-"], "-"),
        (">5 years", [">5 years", "<5 years"], ">5 years"),
        ("Answer: <5 years.", [">5 years", "<5 years"], "<5 years"),
        ("STRASSE", ["Straße", "Weg"], "Straße"),  # compared Unicode case-folded
        ("ｙｅｓ", YES_NO_MAYBE, "yes"),  # full-width letters: the same after NFKC
        ("No-one knows.", YES_NO_MAYBE, None),  # a hyphen joining letters continues the word
        ("No—the data say otherwise", YES_NO_MAYBE, "no"),  # a dash between words does not
        ("No - it does not", YES_NO_MAYBE, "no"),
        ("Yes'm", YES_NO_MAYBE, None),
    ],
)
def test_labels_and_answers_are_read_in_the_same_normal_form(answer, labels, expected):
    assert L.extract_label(answer, labels) == expected


def test_a_label_set_the_reader_cannot_tell_apart_is_refused():
    with pytest.raises(ValueError, match="'STRASSE' and 'Straße' read the same"):
        L.check_label_set(["STRASSE", "Straße"])
    assert L.check_label_set(["+", "-"]) == ("+", "-")
    assert L.normalise_label("STRASSE", ["Straße", "Weg"]) == "Straße"
    assert L.strip_label("Straße, the old road", ["Straße", "Weg"]) == "the old road"
