"""Bootstrap statistics over per-example scores: seeded percentile intervals of each corpus metric,
and the paired test of two systems on the same examples (sacreBLEU's, after Koehn 2004).

Both work on any `Resamplable`: the text metrics' `metrics.TextScores` and the label metrics' `labels.LabelScores`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

# The fewest examples a bootstrap is run on. With n examples there are C(2n-1, n) distinct resamples: 1 for one
# example, 10 for three, 126 for five, 92,378 for ten. Below ten, a thousand resamples repeat a handful of
# patterns, and the interval and p-value they give look precise while meaning nothing (one question: every
# metric p = 0.0196, an interval of width 0); none is reported then.
MIN_EXAMPLES = 10


class Resamplable(Protocol):
    """Per-example results whose corpus metrics can be recomputed over any resample of the examples."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    def resampled(self, indices: Any) -> dict[str, float]:
        """Every corpus metric over the examples at `indices` (numpy integer indices, repeats allowed)."""
        ...


def bootstrap_intervals(
    scores: Resamplable, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Seeded percentile bootstrap intervals of each corpus metric, resampling examples.

    Each resample draws len(scores) example indices with replacement; ROUGE and METEOR are the
    mean over the resample and BLEU is recomputed from the resample's summed sacreBLEU statistics.
    Fewer than MIN_EXAMPLES examples: no intervals ({}).
    """
    import numpy as np

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    if len(scores) < MIN_EXAMPLES:
        return {}
    rng = np.random.default_rng(seed)
    draws = [scores.resampled(rng.integers(0, len(scores), size=len(scores))) for _ in range(samples)]
    tail = (1 - confidence) / 2 * 100
    return {
        name: tuple(float(x) for x in np.percentile([d[name] for d in draws], [tail, 100 - tail]))
        for name in scores.names
    }


def paired_bootstrap(
    baseline: Resamplable, candidate: Resamplable, samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, dict[str, float]]:
    """Paired bootstrap test of candidate - baseline on the same examples, for every metric.

    Both systems are scored on the same resampled example indices. For each metric: `difference`
    (candidate - baseline on all examples), its percentile interval (`ci_low`, `ci_high`) and a
    two-sided `p_value` computed as sacreBLEU's paired bootstrap test does (Koehn 2004, as in
    Moses): the resampled absolute differences are centred on their mean, and p = (c + 1) / (n + 1)
    with c the resamples whose centred difference reaches the observed one. sacreBLEU counts only
    strictly greater ones (c uses >), which gives identical systems p = 1/(n + 1); ties count here
    (>=), so identical systems get p = 1. BLEU is recomputed per resample from sacreBLEU statistics;
    ROUGE and METEOR are means of per-example scores. Fewer than MIN_EXAMPLES examples: the difference alone,
    with `ci_low`, `ci_high` and `p_value` None.
    """
    import numpy as np

    if len(baseline) != len(candidate):
        raise ValueError(f"paired test needs the same examples: {len(baseline)} baseline, {len(candidate)} candidate")
    rng = np.random.default_rng(seed)
    names = [n for n in baseline.names if n in candidate.names]
    whole = slice(None)
    observed = {n: candidate.resampled(whole)[n] - baseline.resampled(whole)[n] for n in names}
    if len(baseline) < MIN_EXAMPLES:
        return {n: {"difference": observed[n], "ci_low": None, "ci_high": None, "p_value": None} for n in names}
    diffs: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(samples):
        idx = rng.integers(0, len(baseline), size=len(baseline))
        a, b = baseline.resampled(idx), candidate.resampled(idx)
        for n in names:
            diffs[n].append(b[n] - a[n])
    return _tested(observed, diffs, samples, confidence)


def _tested(
    observed: dict[str, float], diffs: dict[str, list[float]], samples: int, confidence: float
) -> dict[str, dict[str, float]]:
    """Each metric's observed difference, the percentile interval of its resampled differences and the centred
    two-sided p-value (Koehn 2004, ties counted)."""
    import numpy as np

    tail = (1 - confidence) / 2 * 100
    result = {}
    for n, values in diffs.items():
        values = np.asarray(values)
        centred = np.abs(values) - np.abs(values).mean()
        p_value = (np.sum(centred >= abs(observed[n]) - 1e-12) + 1) / (samples + 1)
        low, high = np.percentile(values, [tail, 100 - tail])
        result[n] = {"difference": observed[n], "ci_low": float(low), "ci_high": float(high), "p_value": float(p_value)}
    return result


def two_level_bootstrap(
    baseline: Sequence[Resamplable],
    candidate: Sequence[Resamplable],
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Several runs per side (seeds of two recipes) on the same examples: the difference of the sides' mean
    scores, with a two-level bootstrap interval and p-value, for every metric.

    Each resample first draws each side's runs with replacement (independently: seed 1 of one recipe is no
    partner of seed 1 of the other), then len(examples) example indices with replacement, shared by both sides
    (the paired set); a side's value is the mean over its drawn runs of each run's corpus metric on those
    examples. The interval and p-value are then computed as `paired_bootstrap` computes them. The examples are
    drawn from the same seeded stream as `paired_bootstrap`'s and the runs from a second one, so with one run
    per side the result is `paired_bootstrap`'s, resample for resample. Fewer than MIN_EXAMPLES examples: the
    difference alone.
    """
    import numpy as np

    sizes = {len(run) for run in (*baseline, *candidate)}
    if not baseline or not candidate or len(sizes) != 1:
        raise ValueError(f"a two-level test needs runs on both sides over the same examples, got sizes {sizes}")
    (size,) = sizes
    names = [n for n in baseline[0].names if all(n in run.names for run in (*baseline, *candidate))]

    def mean_of(runs: Sequence[Resamplable], picks: Any, idx: Any) -> dict[str, float]:
        scored = {i: runs[i].resampled(idx) for i in set(picks.tolist())}
        return {n: float(np.mean([scored[i][n] for i in picks])) for n in names}

    whole, every = slice(None), (np.arange(len(baseline)), np.arange(len(candidate)))
    base, cand = mean_of(baseline, every[0], whole), mean_of(candidate, every[1], whole)
    observed = {n: cand[n] - base[n] for n in names}
    if size < MIN_EXAMPLES:
        return {n: {"difference": observed[n], "ci_low": None, "ci_high": None, "p_value": None} for n in names}
    examples, runs = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    diffs: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(samples):
        idx = examples.integers(0, size, size=size)
        picks = [runs.integers(0, len(side), size=len(side)) for side in (baseline, candidate)]
        a, b = mean_of(baseline, picks[0], idx), mean_of(candidate, picks[1], idx)
        for n in names:
            diffs[n].append(b[n] - a[n])
    return _tested(observed, diffs, samples, confidence)
