"""The fast paths of metrics_utils give exactly the libraries' numbers, example by example.

Random biomedical-flavoured texts (punctuation, units, Greek letters, numbers, newlines, empty
strings, long answers, several references) are scored by metrics_utils and by the plain library
calls that the evaluate scripts make; every per-example score must be identical.
"""

import random

import pytest

import evaluate_reference as reference
import metrics_utils
from bioqa.evaluate import scorers

VOCAB = (
    "IL-6 TNF-α cytokine β-blockers patients p < 0.05 mg/kg 5 mmol/L HbA1c insulin glucose was were "
    "is running ran runs geese goose better treated treatment treats ACE-inhibitors (CI 95%) "
    "hepatic renal failure, infection; tumour tumor cells cell's don't it's \"quoted\" -- ... "
    "µg/mL ≥ 10 × 10⁹/L the a of and in with to for on by"
).split()


def random_text(rng: random.Random, max_words: int = 40) -> str:
    words = [rng.choice(VOCAB) for _ in range(rng.randint(0, max_words))]
    for _ in range(rng.randint(0, 2)):  # sentence breaks and newlines exercise rougeLsum and punkt
        if words:
            words.insert(rng.randrange(len(words)), rng.choice([".", ".\n", "\n", "?"]))
    return " ".join(words)


def random_pairs(n: int, seed: int, multi_ref: bool = False):
    rng = random.Random(seed)
    predictions = [random_text(rng) for _ in range(n)]
    if not multi_ref:
        return predictions, [random_text(rng) for _ in range(n)]
    return predictions, [[random_text(rng) for _ in range(rng.randint(1, 3))] for _ in range(n)]


@pytest.mark.parametrize("use_stemmer", [False, True])
@pytest.mark.parametrize("multi_ref", [False, True])
def test_rouge_per_example_identical(multi_ref, use_stemmer):
    preds, refs = random_pairs(300, seed=1 + multi_ref, multi_ref=multi_ref)
    ours = metrics_utils.per_example_scores(preds, refs, metrics=("rouge",), use_stemmer=use_stemmer)
    expected = reference.evaluate_rouge(preds, refs, use_aggregator=False, use_stemmer=use_stemmer)
    for key in metrics_utils.ROUGE_TYPES:
        assert [row[key] for row in ours] == expected[key], key


def test_bleu_per_example_and_corpus_identical():
    import sacrebleu

    preds, refs = random_pairs(300, seed=3, multi_ref=True)
    scores = metrics_utils.score_predictions(preds, refs, metrics=("bleu",))
    expected = [sacrebleu.sentence_bleu(p, r).score for p, r in zip(preds, refs)]
    assert scores.per_example["bleu"] == expected
    width = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    corpus = sacrebleu.metrics.BLEU()
    assert scores.corpus()["bleu"] == corpus.corpus_score(preds, streams).score
    assert scores.corpus()["bleu_signature"] == str(corpus.get_signature())


@pytest.mark.parametrize("multi_ref", [False, True])
def test_meteor_per_example_identical(multi_ref):
    from nltk import word_tokenize
    from nltk.translate.meteor_score import meteor_score

    preds, refs = random_pairs(200, seed=4 + multi_ref, multi_ref=multi_ref)
    ours = metrics_utils.per_example_scores(preds, refs, metrics=("meteor",))
    refs = [[r] if isinstance(r, str) else r for r in refs]
    expected = [meteor_score([word_tokenize(x) for x in r], word_tokenize(p)) for p, r in zip(preds, refs)]
    assert [row["meteor"] for row in ours] == expected


def test_pool_of_workers_gives_the_serial_result():
    preds, refs = random_pairs(120, seed=6, multi_ref=True)
    serial = metrics_utils.score_predictions(preds, refs, num_workers=1)
    pooled = metrics_utils.score_predictions(preds, refs, num_workers=3)
    assert pooled.per_example == serial.per_example
    assert pooled.parts["bleu"].statistics == serial.parts["bleu"].statistics
    assert pooled.corpus() == serial.corpus()


def test_bit_parallel_lcs_equals_rouge_score_table():
    from rouge_score.rouge_scorer import _lcs_table

    rng = random.Random(7)
    for _ in range(400):
        alphabet = rng.choice(["ab", "abc", "abcdefgh"])
        a = [rng.choice(alphabet) for _ in range(rng.randint(0, 150))]
        b = [rng.choice(alphabet) for _ in range(rng.randint(0, 150))]
        assert scorers._lcs_length(a, b) == _lcs_table(a, b)[-1][-1]


def test_word_tokenize_equals_nltk():
    import nltk

    rng = random.Random(8)
    texts = [random_text(rng, 80) for _ in range(300)] + [
        'He said, "I can\'t go." (Really?) [Yes] {no} -- ok...',
        "Doses of 5 mg/kg b.i.d. vs. 10 mg/kg q.d. were compared; p < 0.05.",
        "Caf\u0065\u0301 na\u00efve \u00b5g \u2265 3 \u00d7 10\u2079/L",
        "",
        "   ",
    ]
    assert [scorers.word_tokenize(t) for t in texts] == [nltk.word_tokenize(t) for t in texts]


def synonyms(wordnet, word: str) -> set:
    """The synonym set METEOR builds from `wordnet.synsets(word)`."""
    return {lemma.name() for synset in wordnet.synsets(word) for lemma in synset.lemmas() if lemma.name().find("_") < 0}


def check_synonyms(words) -> None:
    from nltk.corpus import wordnet

    metrics_utils.nltk_data_available()
    memo = scorers._wordnet()
    mismatches = [w for w in words if synonyms(memo, w) != synonyms(wordnet, w)]
    assert not mismatches, mismatches[:10]


def test_wordnet_synonyms_equal_nltk_reader_sample():
    rng = random.Random(9)
    index = sorted(scorers._wordnet().reader._lemma_pos_offset_map)
    words = rng.sample(index, 3000) + ["running", "geese", "better", "was", "IL-6", "Treated", "", "β"]
    check_synonyms(words)


@pytest.mark.slow
def test_wordnet_synonyms_equal_nltk_reader_every_lemma():
    check_synonyms(sorted(scorers._wordnet().reader._lemma_pos_offset_map))
