"""Benchmark: --do_predict on 100 PubMedQA questions, by generation dtype and KV cache, each in a fresh process.

    python bench/bench_generation.py                       # every arm (about 15 minutes here)
    python bench/bench_generation.py --arms fp32-dynamic bf16-static
    python bench/bench_generation.py --arms bf16-dynamic bf16-reserved --rounds 2   # alternating, twice

The 100 held-out test questions of bench/bench_recipes.py (../shared/data, shuffled with seed 0), the
PubMedQA recipe's generation settings (configs/pubmedqa-smollm2.yaml: at most 96 new tokens, batch 32),
SmolLM2-135M-Instruct zero-shot (or --adapter_name_or_path). Each arm is the toolkit's own command,
`load_models.py --do_predict --generation_dtype D --generation_cache C`, timed whole (loading, generating,
scoring). Every arm is compared with the first on the same questions: corpus scores, the paired bootstrap
interval of the difference, and the share of answers that are identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import metrics_utils
from bench_recipes import WORK, read_rows, run, split_source  # beside this script, so on sys.path when it runs
from bioqa.config import answer_flags

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "pubmedqa-smollm2.yaml"
ARMS = ("fp32-dynamic", "bf16-dynamic", "bf16-reserved", "fp32-static", "bf16-static", "bf16-compiled")
METRICS = ("rougeL", "bleu", "meteor")


def predict(arm: str, paths: dict[str, Path], adapter: str | None) -> tuple[float, Path]:
    dtype, cache = arm.split("-")
    out = WORK / "generation" / arm
    seconds = run(
        [
            "load_models.py",
            "--do_predict",
            "--test_file",
            str(paths["test"]),
            "--train_file",
            str(paths["train+dev"]),
            "--split_ratios",
            "1",
            "0",
            "0",
            *answer_flags(CONFIG),
            *(["--adapter_name_or_path", adapter] if adapter else []),
            "--generation_dtype",
            dtype,
            "--generation_cache",
            cache,
            "--output_dir",
            str(out),
            "--overwrite_output_dir",
        ]
    )
    return seconds, out


def scores_of(out: Path) -> tuple[list[str], metrics_utils.TextScores]:
    rows = read_rows(out / "predictions.jsonl")
    predictions = [r["prediction"] for r in rows]
    return predictions, metrics_utils.score_predictions(predictions, [r["reference"] for r in rows])


def difference(test: dict[str, float]) -> str:
    return f"{test['difference']:+.4f} [{test['ci_low']:+.4f}, {test['ci_high']:+.4f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="the first is the baseline")
    parser.add_argument("--adapter_name_or_path", default=None, help="a trained adapter (default: zero-shot base)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the arms in turn this many times (the machine's speed drifts)"
    )
    args = parser.parse_args(argv)
    paths = split_source("pubmedqa")
    seconds: dict[str, list[float]] = {arm: [] for arm in args.arms}
    for _ in range(args.rounds):
        for arm in args.arms:
            seconds[arm].append(predict(arm, paths, args.adapter_name_or_path)[0])
    print(table(args.arms, seconds))
    return 0


def table(arms: list[str], seconds: dict[str, list[float]]) -> str:
    """Each arm's seconds (every round; the speed-up is of medians) and scores against the first arm."""
    base_answers, base_scores = scores_of(WORK / "generation" / arms[0])
    lines = [
        f"\n--do_predict, {len(base_answers)} PubMedQA test questions; baseline {arms[0]}\n",
        "| arm | seconds | speed-up | " + " | ".join(f"{m} [95% CI]" for m in METRICS) + " | identical answers |",
        "|---|---|---|" + "---|" * len(METRICS) + "---|",
    ]
    for arm in arms:
        answers, scores = scores_of(WORK / "generation" / arm)
        paired = metrics_utils.paired_bootstrap(base_scores, scores, 1000, seed=0)
        corpus = scores.corpus()
        cells = [f"{corpus[m]:.4f} ({difference(paired[m])})" for m in METRICS]
        same = sum(a == b for a, b in zip(answers, base_answers))
        runs = " / ".join(f"{s:.0f}" for s in seconds[arm])
        speedup = statistics.median(seconds[arms[0]]) / statistics.median(seconds[arm])
        lines.append(f"| {arm} | {runs} | {speedup:.2f}x | " + " | ".join(cells) + f" | {same} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
