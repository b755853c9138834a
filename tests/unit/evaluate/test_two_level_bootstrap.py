"""The two-level bootstrap of several runs per side (seeds, then questions): a hand-computed case, and the one-level
paired bootstrap it must reduce to when the seed level has nothing to draw."""

import random

import numpy as np
import pytest

import metrics_utils
from bioqa.benchmark.results import Accuracy
from bioqa.evaluate.bootstrap import paired_bootstrap, two_level_bootstrap


def runs(rate: float, n: int, seed: int) -> Accuracy:
    rng = random.Random(seed)
    return Accuracy(tuple(rng.random() < rate for _ in range(n)))


def test_by_hand_when_every_run_scores_all_questions_alike():
    """Each run right on every question or on none: the question draws change nothing, only the run draws do.
    Baseline runs score 0 and 1: the mean of two draws is 0, 1/2 or 1 with odds 1/4, 1/2, 1/4; both candidate runs
    score 1: the difference is 1, 1/2 or 0 with odds 1/4, 1/2, 1/4."""
    n = 12
    base = [Accuracy((False,) * n), Accuracy((True,) * n)]
    cand = [Accuracy((True,) * n), Accuracy((True,) * n)]
    result = two_level_bootstrap(base, cand, samples=4000, seed=3)["accuracy"]
    assert result["difference"] == 0.5  # 1 - mean(0, 1)
    assert (result["ci_low"], result["ci_high"]) == (0.0, 1.0)
    # centred |difference|: |d| - mean|d| = d - 1/2; p counts d - 1/2 >= 1/2, i.e. d = 1: odds 1/4
    assert result["p_value"] == pytest.approx(0.25, abs=0.02)


def test_by_hand_with_two_distinct_runs_per_side():
    """Means over two runs drawn with replacement: baseline 0.2 / 0.3 / 0.4, candidate 0.5 / 0.6 / 0.7, with odds
    1/4, 1/2, 1/4; the difference's extremes 0.1 and 0.5 each have odds 1/16 > 2.5%, so they bound the interval,
    and no resample is 0.3 further from the mean difference than the observed 0.3: p = 1 / (samples + 1)."""
    base = [_fixed(0.2), _fixed(0.4)]
    cand = [_fixed(0.5), _fixed(0.7)]
    samples = 2000
    result = two_level_bootstrap(base, cand, samples=samples, seed=0)["score"]
    assert result["difference"] == pytest.approx(0.3)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.1, 0.5))
    assert result["p_value"] == pytest.approx(1 / (samples + 1))


class _fixed:
    """A run whose score is the same on every resample of its (ten) questions."""

    names = ("score",)

    def __init__(self, value: float):
        self.value = value

    def __len__(self) -> int:
        return 10

    def resampled(self, indices):
        return {"score": self.value}


@pytest.mark.parametrize("copies", [1, 3])
def test_one_run_per_side_or_copies_of_it_give_the_one_level_test(copies):
    """Drawing among identical runs changes nothing, and the questions come from paired_bootstrap's own stream:
    one run per side gives its result exactly; copies, up to the rounding of their mean."""
    a, b = runs(0.4, 60, 1), runs(0.6, 60, 2)
    two, one = two_level_bootstrap([a] * copies, [b] * copies, 500, seed=9), paired_bootstrap(a, b, 500, seed=9)
    if copies == 1:
        assert two == one
    assert two["accuracy"] == pytest.approx(one["accuracy"], abs=1e-12)


def test_text_scores_with_one_run_per_side_give_the_one_level_test():
    rng = random.Random(4)
    words = "insulin lowers raises blood glucose pressure the heart rate liver".split()
    refs = [" ".join(rng.choices(words, k=8)) for _ in range(20)]
    a = metrics_utils.score_predictions([" ".join(rng.choices(words, k=6)) for _ in refs], refs)
    b = metrics_utils.score_predictions([" ".join(rng.choices(words, k=6)) for _ in refs], refs)
    assert two_level_bootstrap([a], [b], 200, seed=1) == paired_bootstrap(a, b, 200, seed=1)


def test_the_seed_spread_widens_the_interval():
    """Runs that disagree (one lucky seed, right everywhere) give a wider interval than runs that agree."""
    n = 80
    agree = [runs(0.5, n, s) for s in (10, 11, 12)]
    spread = [Accuracy(tuple(np.asarray(r.correct) | (i == 0))) if i == 0 else r for i, r in enumerate(agree)]
    base = [runs(0.5, n, s) for s in (20, 21, 22)]
    narrow = two_level_bootstrap(base, agree, 1000, seed=0)["accuracy"]
    wide = two_level_bootstrap(base, spread, 1000, seed=0)["accuracy"]
    assert wide["ci_high"] - wide["ci_low"] > narrow["ci_high"] - narrow["ci_low"]


def test_runs_over_other_questions_are_refused():
    with pytest.raises(ValueError, match="same examples"):
        two_level_bootstrap([runs(0.5, 10, 1)], [runs(0.5, 12, 2)])
