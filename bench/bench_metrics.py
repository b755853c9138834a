"""Benchmark: metrics_utils against the Hugging Face evaluate computations, same numbers, less time.

    python bench/bench_metrics.py [--pairs 2000] [--words 40] [--repeats 3]

Builds prediction/reference pairs of about `--words` words from real biomedical answers (MedQuAD
and PubMedQA long answers in ../shared/data; a synthetic vocabulary when that folder is absent):
each prediction is its reference with words dropped, substituted and swapped. Each timing runs in
a fresh process, so no run inherits another's caches:

* warm: libraries imported and WordNet loaded by scoring 20 other pairs first, then one call on
  all pairs is timed (the issue's "already loaded" evaluate figures).
* cold: a new interpreter imports the module and scores the first 20 pairs (imports, WordNet
  load); the baseline imports `evaluate` too, as `evaluate.load` needs it.

The baseline is tests/evaluate_reference.py: the calls evaluate 0.4.6's rouge, sacrebleu and
meteor scripts make (the scripts themselves come from the Hub, unreachable offline), without
evaluate's own overhead (Arrow caching), so it understates evaluate's real cost a little.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
BASELINES = ("rouge", "sacrebleu", "meteor")

WORKER = r"""
import json, sys, time
sys.path[:0] = [{root!r}, {tests!r}]
start = time.perf_counter()
{imports}
pairs = json.load(open({pairs!r}))
preds, refs = pairs["predictions"], pairs["references"]
if {cold}:
    result = run(preds[:20], refs[:20])
else:
    run(preds[-20:], refs[-20:])
    start = time.perf_counter()
    result = run(preds, refs)
print(json.dumps({{"seconds": time.perf_counter() - start, "result": result}}))
"""

OURS = "import metrics_utils\ndef run(p, r): return metrics_utils.compute_metrics(p, r, num_workers={workers}{only})"
BASELINE = "import evaluate_reference as ref, nltk\nnltk.data.path.insert(0, {nltk!r})\n"
IMPORTS = {
    "rouge": BASELINE + "def run(p, r): return ref.mean_rouge(p, r)",
    "sacrebleu": BASELINE + "def run(p, r): return {{'bleu': ref.evaluate_sacrebleu(p, r)}}",
    "meteor": BASELINE + "def run(p, r): return {{'meteor': ref.evaluate_meteor(p, r)}}",
    # cold start: one process imports evaluate (as evaluate.load needs) and computes all three
    "evaluate (all three)": "import evaluate\n" + BASELINE + "def run(p, r): return {{**ref.mean_rouge(p, r), "
    "'bleu': ref.evaluate_sacrebleu(p, r), 'meteor': ref.evaluate_meteor(p, r)}}",
    "metrics_utils rouge, 1 process": OURS.replace("{workers}", "1").replace("{only}", ", metrics=('rouge',)"),
    "metrics_utils bleu, 1 process": OURS.replace("{workers}", "1").replace("{only}", ", metrics=('bleu',)"),
    "metrics_utils meteor, 1 process": OURS.replace("{workers}", "1").replace("{only}", ", metrics=('meteor',)"),
    "metrics_utils, 1 process": OURS.replace("{workers}", "1").replace("{only}", ""),
    "metrics_utils": OURS.replace("{only}", ""),
}
WARM = (
    "rouge",
    "sacrebleu",
    "meteor",
    "metrics_utils rouge, 1 process",
    "metrics_utils bleu, 1 process",
    "metrics_utils meteor, 1 process",
    "metrics_utils, 1 process",
    "metrics_utils",
)
COLD = ("evaluate (all three)", "metrics_utils")


def source_answers() -> list[str]:
    answers = []
    medquad = SHARED / "medquad" / "medquad_small.jsonl"
    pubmedqa = SHARED / "pubmedqa" / "ori_pqal_train.json"
    if medquad.exists():
        answers += [json.loads(line)["answer"] for line in medquad.open(encoding="utf-8")]
    if pubmedqa.exists():
        answers += [row["LONG_ANSWER"] for row in json.loads(pubmedqa.read_text(encoding="utf-8")).values()]
    if answers:
        return answers
    rng = random.Random(1)
    vocab = (
        "IL-6 TNF-alpha cytokine receptor patients cohort dose mg/kg p < 0.05 β-blockers renal hepatic "
        "insulin glucose infection antibiotic mutation gene expression tumor therapy risk trial"
    ).split()
    return [" ".join(rng.choice(vocab) for _ in range(60)) + "." for _ in range(500)]


def make_pairs(n: int, words: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    answers = source_answers()
    vocabulary = [w for a in answers for w in a.split()]
    predictions, references = [], []
    for i in range(n):
        tokens = answers[i % len(answers)].split()
        start = rng.randrange(max(1, len(tokens) - words))
        reference = tokens[start : start + words]
        pred = [w if rng.random() > 0.15 else rng.choice(vocabulary) for w in reference if rng.random() > 0.2]
        for _ in range(3):
            k = rng.randrange(max(1, len(pred) - 1))
            pred[k : k + 2] = pred[k : k + 2][::-1]
        references.append(" ".join(reference))
        predictions.append(" ".join(pred))
    return predictions, references


def time_in_fresh_process(name: str, pairs_file: Path, cold: bool, workers: str) -> dict:
    imports = IMPORTS[name].format(workers=workers, nltk=str(ROOT / "nltk_data"))
    code = WORKER.format(root=str(ROOT), tests=str(ROOT / "tests"), imports=imports, pairs=str(pairs_file), cold=cold)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_run(name: str, pairs_file: Path, cold: bool, repeats: int, workers: str) -> tuple[float, dict]:
    runs = [time_in_fresh_process(name, pairs_file, cold, workers) for _ in range(repeats)]
    return statistics.median(r["seconds"] for r in runs), runs[0]["result"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000, help="number of prediction/reference pairs")
    parser.add_argument("--words", type=int, default=40, help="words per reference")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per timing (median)")
    parser.add_argument("--workers", default="None", help="num_workers for metrics_utils (None = auto)")
    args = parser.parse_args(argv)

    predictions, references = make_pairs(args.pairs, args.words)
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = Path(tmp) / "pairs.json"
        pairs_file.write_text(json.dumps({"predictions": predictions, "references": references}))
        rows, values = [], {}
        for cold, names in ((False, WARM), (True, COLD)):
            for name in names:
                seconds, result = median_run(name, pairs_file, cold, args.repeats, args.workers)
                rows.append((("cold" if cold else "warm"), name, seconds))
                if not cold:
                    values[name] = result
    report(rows, values, args)
    return 0


def report(rows: list[tuple], values: dict, args: argparse.Namespace) -> None:
    print(f"{args.pairs} pairs of ~{args.words} words, median of {args.repeats} fresh-process runs\n")
    print("| start | implementation | seconds |\n|---|---|---|")
    for start, name, seconds in rows:
        print(f"| {start} | {name} | {seconds:.3f} |")
    for start in ("warm", "cold"):
        base = sum(s for st, n, s in rows if st == start and n in (*BASELINES, "evaluate (all three)"))
        ours = next(s for st, n, s in rows if st == start and n == "metrics_utils")
        print(f"\n{start}: evaluate computations {base:.3f} s, metrics_utils {ours:.3f} s: {base / ours:.2f}x faster")
    ours = values["metrics_utils"]
    expected = {**values["rouge"], **values["sacrebleu"], **values["meteor"]}
    diffs = {k: abs(ours[k] - v) for k, v in expected.items()}
    print(f"\nlargest difference from the baseline values: {max(diffs.values()):.2e} ({json.dumps(diffs)})")


if __name__ == "__main__":
    sys.exit(main())
