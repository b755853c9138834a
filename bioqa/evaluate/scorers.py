"""Exact per-example ROUGE, BLEU statistics and METEOR: the engine behind `metrics_utils`.

Each function gives the same numbers as the library it wraps (rouge-score, sacreBLEU, NLTK) and
does each piece of work once: a text is tokenised once per call, rouge1/2 count n-grams directly,
rougeL uses a bit-parallel LCS, METEOR gets NLTK's own Porter stemmer and WordNet reader with
memoised lookups, and large inputs are split over forked worker processes that inherit the loaded
WordNet. Only the standard library is imported at module load.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from bioqa import compat
from bioqa.io.paths import looked_in, nltk_data_dir

NLTK_DATA_DIR = nltk_data_dir()  # as at import; METEOR looks in nltk_data_dir() as it is when first computed
SETUP_HINT = "run `make setup` (or `python tools/setup_nltk_data.py`)"
# Below this many examples per worker, forking a pool costs more than it saves.
MIN_EXAMPLES_PER_WORKER = 400


class MissingNLTKDataError(RuntimeError):
    """METEOR was asked for but WordNet or punkt_tab cannot be found."""


# ----------------------------------------------------------------------------- NLTK data


def _add_project_nltk_path() -> None:
    import nltk

    folder = str(nltk_data_dir())
    if folder not in nltk.data.path:
        nltk.data.path.insert(0, folder)


def nltk_data_available() -> bool:
    """Whether WordNet and punkt_tab (needed by METEOR) are on NLTK's search path."""
    import nltk

    _add_project_nltk_path()
    try:
        nltk.data.find("corpora/wordnet")
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        return False
    return True


def require_nltk_data() -> None:
    if not nltk_data_available():
        where = looked_in(nltk_data_dir(), "BIOQA_NLTK_DATA", "nltk_data")
        raise MissingNLTKDataError(
            f"METEOR needs NLTK's WordNet and punkt_tab, which are not in {where} nor on NLTK's own path; "
            f"{SETUP_HINT}, or leave METEOR out with metrics=('rouge', 'bleu')"
        )


# ----------------------------------------------------------------------------- shared caches


@lru_cache(maxsize=1)
def _stemmer():
    """NLTK's Porter stemmer with memoised `stem`: rouge_score and METEOR stem the same words."""
    from nltk.stem.porter import PorterStemmer

    stemmer = PorterStemmer()
    stemmer.stem = lru_cache(maxsize=1 << 18)(stemmer.stem)
    return stemmer


class _Lemma:
    """A WordNet lemma reduced to what METEOR reads of it: its name."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def name(self) -> str:
        return self._name


class _SynonymSet:
    """One stand-in synset holding the lemmas of all a word's synsets (METEOR unites them anyway)."""

    __slots__ = ("_lemmas",)

    def __init__(self, names: Sequence[str]):
        self._lemmas = [_Lemma(name) for name in names]

    def lemmas(self) -> list[_Lemma]:
        return self._lemmas


class _MemoWordNet:
    """WordNet as METEOR uses it: `synsets(word)`, only to collect the synsets' lemma names.

    The lookup is NLTK's own (morphy, the lemma index, all four parts of speech), but each synset's
    lemma names are read straight from its data-file line instead of building a full Synset, and
    one stand-in synset carries the word's name set, so METEOR builds the same set for less.
    """

    def __init__(self, reader):
        from nltk import redos

        self.reader = reader
        # NLTK's own pattern for a lemma's syntactic marker, such as "(a)" in "galore(ip)".
        self._marker = redos.compile(r"(.*?)(\([^()]*\))?$")
        self._data: dict[str, bytes] = {}

    @lru_cache(maxsize=1 << 18)  # noqa: B019 (one instance per process, kept for its life: the cache may hold it)
    def synsets(self, word: str) -> list[_SynonymSet]:
        from nltk.corpus.reader.wordnet import POS_LIST

        names: set[str] = set()
        for pos in POS_LIST:
            for form in compat.wordnet_forms(self.reader, word.lower(), pos):
                for offset in compat.wordnet_offsets(self.reader, form, pos):
                    names.update(self._lemma_names(pos, offset))
        return [_SynonymSet(sorted(name for name in names if "_" not in name))]

    @lru_cache(maxsize=1 << 18)  # noqa: B019 (as above)
    def _lemma_names(self, pos: str, offset: int) -> tuple[str, ...]:
        """Lemma names on the data line at `offset`: `offset lexfile pos count (name lex_id)*count ...`."""
        if pos not in self._data:  # whole file in memory: no file handle shared with forked workers
            with self.reader.abspath(f"data.{compat.wordnet_data_file(self.reader, pos)}").open() as stream:
                self._data[pos] = stream.read()
        data = self._data[pos]
        fields = data[offset : data.index(b"\n", offset)].decode("utf-8").split("|", 1)[0].split()
        return tuple(self._marker.match(fields[4 + 2 * i]).group(1) for i in range(int(fields[3], 16)))


@lru_cache(maxsize=1)
def _wordnet() -> _MemoWordNet:
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    _add_project_nltk_path()

    class EnglishWordNet(WordNetCorpusReader):
        # NLTK 3.10 maps every sense to WordNet 3.0 at load time (seconds) for multilingual (OMW)
        # lookups only; English synsets(), all METEOR uses, never reads that map.
        def map_wn(self, version="wordnet"):
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed
        reader = EnglishWordNet(nltk.data.find("corpora/wordnet"), None)
    return _MemoWordNet(reader)


# ----------------------------------------------------------------------------- ROUGE


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyro 2004): one big-int step per token of b."""
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full
    for token in b:
        matched = row & masks.get(token, 0)
        row = ((row + matched) | (row - matched)) & full
    return len(a) - row.bit_count()


def _ngram_f1(target: Sequence[str], prediction: Sequence[str], n: int) -> float:
    from collections import Counter

    from rouge_score.scoring import fmeasure

    target_ngrams = Counter(tuple(target[i : i + n]) for i in range(len(target) - n + 1))
    pred_ngrams = Counter(tuple(prediction[i : i + n]) for i in range(len(prediction) - n + 1))
    overlap = sum(min(count, pred_ngrams[gram]) for gram, count in target_ngrams.items())
    precision = overlap / max(sum(pred_ngrams.values()), 1)
    recall = overlap / max(sum(target_ngrams.values()), 1)
    return fmeasure(precision, recall)


def _lcs_f1(target: Sequence[str], prediction: Sequence[str]) -> float:
    from rouge_score.scoring import fmeasure

    if not target or not prediction:
        return 0.0
    lcs = _lcs_length(target, prediction)
    return fmeasure(lcs / len(prediction), lcs / len(target))


def _lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line]


class RougeScorer:
    """rouge_score's RougeScorer.score with each text tokenised once and a faster exact LCS."""

    def __init__(self, rouge_types: Sequence[str], use_stemmer: bool, tokenizer: Callable | None):
        from rouge_score.tokenize import tokenize

        for rouge_type in rouge_types:
            if rouge_type not in ("rougeL", "rougeLsum") and not re.fullmatch(r"rouge[1-9]", rouge_type):
                raise ValueError(f"unknown ROUGE type {rouge_type!r}; use rouge1..rouge9, rougeL or rougeLsum")
        stemmer = _stemmer() if use_stemmer else None
        self.rouge_types = tuple(rouge_types)
        self._tokenize = tokenizer or (lambda text: tokenize(text, stemmer))
        self._cache: dict[str, list[str]] = {}

    def tokens(self, text: str) -> list[str]:
        if text not in self._cache:
            self._cache[text] = self._tokenize(text)
        return self._cache[text]

    def _lsum_f1(self, target: str, prediction: str) -> float:
        target_lines, pred_lines = _lines(target), _lines(prediction)
        if len(target_lines) == 1 and len(pred_lines) == 1:
            # One sentence each: summary-level LCS reduces to plain LCS over the same tokens.
            return _lcs_f1(self.tokens(target_lines[0]), self.tokens(pred_lines[0]))
        from rouge_score.rouge_scorer import _summary_level_lcs

        score = _summary_level_lcs([self.tokens(s) for s in target_lines], [self.tokens(s) for s in pred_lines])
        return float(score.fmeasure)  # rouge_score gives an int 0 for empty input

    def score(self, target: str, prediction: str) -> dict[str, float]:
        target_tokens, pred_tokens = self.tokens(target), self.tokens(prediction)
        result = {}
        for rouge_type in self.rouge_types:
            if rouge_type == "rougeL":
                result[rouge_type] = _lcs_f1(target_tokens, pred_tokens)
            elif rouge_type == "rougeLsum":
                result[rouge_type] = self._lsum_f1(target, prediction)
            else:
                result[rouge_type] = _ngram_f1(target_tokens, pred_tokens, int(rouge_type[5:]))
        return result

    def score_multi(self, targets: Sequence[str], prediction: str) -> dict[str, float]:
        per_target = [self.score(t, prediction) for t in targets]
        return {key: max(s[key] for s in per_target) for key in self.rouge_types}


# ----------------------------------------------------------------------------- BLEU and METEOR


def bleu_metric(options: tuple, sentence_level: bool = False):
    """A sacreBLEU BLEU object per option set, kept so its tokenizer's cache survives across calls."""
    return _cached_bleu(options + ((("effective_order", True),) if sentence_level else ()))


@lru_cache(maxsize=16)
def _cached_bleu(options: tuple):
    from sacrebleu.metrics import BLEU

    return BLEU(**dict(options))


def _reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacreBLEU's layout: one stream per reference position, None where a prediction has fewer."""
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def _bleu_statistics(predictions: Sequence[str], references: list[list[str]], options: tuple) -> list[list[int]]:
    return compat.bleu_corpus_statistics(bleu_metric(options), predictions, _reference_streams(references))


@lru_cache(maxsize=1)
def _word_tokenizer():
    """NLTK's word tokenizer with its fixed, linear patterns run without the per-call ReDoS timer.

    NLTK 3.10 runs every substitution under a wall-clock timeout, which makes `word_tokenize`
    about four times slower; the patterns and the `regex` engine are the same, so are the tokens.
    """
    from nltk.tokenize.destructive import NLTKWordTokenizer

    _add_project_nltk_path()  # for the punkt sentence model word_tokenize loads
    tokenizer = NLTKWordTokenizer()
    for name in ("STARTING_QUOTES", "PUNCTUATION", "ENDING_QUOTES", "CONVERT_PARENTHESES"):
        setattr(tokenizer, name, [(compat.untimed_pattern(p), sub) for p, sub in getattr(tokenizer, name)])
    for name in ("PARENS_BRACKETS", "DOUBLE_DASHES"):
        pattern, sub = getattr(tokenizer, name)
        setattr(tokenizer, name, (compat.untimed_pattern(pattern), sub))
    for name in ("CONTRACTIONS2", "CONTRACTIONS3"):
        setattr(tokenizer, name, [compat.untimed_pattern(p) for p in getattr(tokenizer, name)])
    return tokenizer


def word_tokenize(text: str) -> list[str]:
    """Exactly `nltk.word_tokenize(text)`: English punkt sentences, then NLTK's word tokenizer."""
    from nltk.tokenize import sent_tokenize

    tokenizer = _word_tokenizer()
    return [token for sentence in sent_tokenize(text) for token in tokenizer.tokenize(sentence)]


def _meteor_scores(predictions: Sequence[str], references: list[list[str]], params: tuple) -> list[float]:
    from nltk.translate.meteor_score import meteor_score

    alpha, beta, gamma = params
    stemmer, wordnet = _stemmer(), _wordnet()
    cache: dict[str, list[str]] = {}

    def tokens(text: str) -> list[str]:
        if text not in cache:
            cache[text] = word_tokenize(text)
        return cache[text]

    return [
        meteor_score(
            [tokens(r) for r in refs],
            tokens(pred),
            stemmer=stemmer,
            wordnet=wordnet,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
        )
        for pred, refs in zip(predictions, references)
    ]


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Job:
    metrics: tuple[str, ...]
    rouge: RougeScorer | None
    bleu_options: tuple
    meteor_params: tuple


def _score_chunk(job: Job, predictions: Sequence[str], references: list[list[str]]) -> dict[str, list]:
    """Every per-example figure for one slice of the data (run in-process or in a forked worker)."""
    out: dict[str, list] = {}
    if job.rouge is not None:
        rows = [job.rouge.score_multi(refs, pred) for pred, refs in zip(predictions, references)]
        out.update({key: [row[key] for row in rows] for key in job.rouge.rouge_types})
    if "bleu" in job.metrics:
        out["bleu_stats"] = _bleu_statistics(predictions, references, job.bleu_options)
    if "meteor" in job.metrics:
        out["meteor"] = _meteor_scores(predictions, references, job.meteor_params)
    return out


_FORKED: tuple | None = None  # (job, predictions, references), inherited by forked workers


def _score_slice(bounds: tuple[int, int]) -> dict[str, list]:
    job, predictions, references = _FORKED
    return _score_chunk(job, predictions[bounds[0] : bounds[1]], references[bounds[0] : bounds[1]])


def worker_count(requested: int | None, n_examples: int) -> int:
    if requested is not None:
        workers = requested
    else:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = min(cpus, 8, n_examples // MIN_EXAMPLES_PER_WORKER)
    # Workers are forked so they share the loaded WordNet and need no pickling of the inputs.
    if not sys.platform.startswith("linux") or multiprocessing.current_process().daemon:
        return 1
    return max(1, workers)


def score_all(job: Job, predictions: Sequence[str], references: list[list[str]], workers: int) -> dict[str, list]:
    global _FORKED
    if workers == 1:
        return _score_chunk(job, predictions, references)
    if "meteor" in job.metrics:
        _wordnet().synsets("load")  # load WordNet once, before forking
    step = math.ceil(len(predictions) / workers)
    bounds = [(start, start + step) for start in range(0, len(predictions), step)]
    _FORKED = (job, predictions, references)
    # Frozen objects are skipped by the children's garbage collector, which would otherwise touch,
    # and so copy, every page of the parent's memory (WordNet alone is hundreds of MB).
    gc.freeze()
    try:
        with multiprocessing.get_context("fork").Pool(len(bounds)) as pool:
            parts = pool.map(_score_slice, bounds)
    finally:
        _FORKED = None
        gc.unfreeze()
    return {key: [value for part in parts for value in part[key]] for key in parts[0]}
