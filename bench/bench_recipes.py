"""Benchmark: the real-data recipes, zero-shot against fine-tuned, on held-out questions.

    python bench/bench_recipes.py --recipe pubmedqa --phase dev     # choose a recipe: train 350, score 50 dev
    python bench/bench_recipes.py --recipe pubmedqa --phase dev2    # a second dev fold: 50 other questions
    python bench/bench_recipes.py --recipe pubmedqa --phase test    # report: 100 test (train 400, or 350 + dev picks)
    python bench/bench_recipes.py --recipe pubmedqa --phase test --seeds 42 1 2  # three seeds, one zero-shot run
    python bench/bench_recipes.py --recipe pubmedqa-decision --phase test --seeds 42 1 2 --compare_to pubmedqa
    python bench/bench_recipes.py --recipe pubmedqa --phase timing  # one epoch over all 500, time only
    python bench/bench_recipes.py --recipe pubmedqa-decision --phase dev  # yes/no/maybe, then the long answer

Data: ../shared/data (PubMedQA labelled train part, 500 questions, raw upstream format; MedQuAD,
1,000 pairs). Each file is shuffled once with seed 0 and cut into test (100), dev (50) and train
(the rest; MedQuAD uses 350 of its 850 to fit this CPU). A second dev fold (dev2) scores the first
50 train questions after training on dev + the other 300, so a choice can rest on 100 questions.
The test part is never used to choose a recipe. A recipe that keeps its best checkpoint by a validation
metric (load_best_model_at_end) validates on a part it neither trains on nor is scored on: in the test
phase it trains on train (350) and picks on dev; in dev and dev2 it trains on the 300 train questions
outside dev2 and picks on the other fold. Every step is the toolkit's own command
(configs/<recipe>-smollm2.yaml, plus the file paths), run as a user would; the comparison gives
paired bootstrap intervals.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import metrics_utils
from bioqa.config import answer_flags, load_yaml
from bioqa.evaluate.report import scores_table
from bioqa.io.files import read_run_config, read_text, text_lines

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / ".recipes"
SOURCES = {
    "pubmedqa": SHARED / "pubmedqa" / "ori_pqal_train.json",
    "pubmedqa-decision": SHARED / "pubmedqa" / "ori_pqal_train.json",  # the same questions and parts
    "medquad": SHARED / "medquad" / "medquad_small.jsonl",
    "mcq": ROOT / "data" / "mcq",  # split already: train (96), validation (16), test (48)
    "dialogues": ROOT / "data" / "dialogues",  # split already: train (40), validation (8), test (16) conversations
}
TRAIN_SIZE = {"pubmedqa": 350, "pubmedqa-decision": 350, "medquad": 350}


def split_source(recipe: str) -> dict[str, Path]:
    """Write test / dev / train (and train+dev, all) files in the source's own format; return their paths."""
    source = SOURCES[recipe]
    if source.is_dir():  # the files are the split; validation serves the evaluations during training
        files = {name: source / f"{name}.jsonl" for name in ("train", "validation", "test")}
        return {**files, "dev": files["validation"], "train+dev": files["train"]}
    keyed = source.suffix == ".json"  # PubMedQA's object keyed by id; MedQuAD's JSON Lines
    if keyed:
        records = list(json.loads(source.read_text(encoding="utf-8")).items())
    else:
        # "\n" only: str.splitlines() would also split inside a text holding U+2028 or U+0085
        records = [json.loads(line) for line in source.read_text(encoding="utf-8").split("\n") if line.strip()]
    random.Random(0).shuffle(records)
    parts = {"test": records[:100], "dev": records[100:150], "train": records[150 : 150 + TRAIN_SIZE[recipe]]}
    parts["train+dev"] = parts["train"] + parts["dev"]
    parts["dev2"], parts["train2"] = parts["train"][:50], parts["dev"] + parts["train"][50:]
    parts["train-rest"] = parts["train"][50:]  # a recipe that picks a checkpoint validates on dev or dev2
    parts["all"] = records
    folder = WORK / recipe / "data"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in parts.items():
        paths[name] = folder / (f"{name}.json" if keyed else f"{name}.jsonl")
        text = json.dumps(dict(rows)) if keyed else "".join(json.dumps(r) + "\n" for r in rows)
        paths[name].write_text(text, encoding="utf-8")
    return paths


def run(command: list[str]) -> float:
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(SOURCES), required=True, help="which real-data recipe")
    parser.add_argument(
        "--phase",
        choices=["dev", "dev2", "test", "timing"],
        default="dev",
        help="dev, dev2: choose (two folds); test: report; timing: 500 examples",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="fine-tune once per seed (load_models.py --seeds) against one zero-shot run (default: the recipe's seed)",
    )
    parser.add_argument(
        "--compare_to",
        choices=sorted(SOURCES),
        help="with --seeds: compare this recipe's seeds with another recipe's (run before with the same --phase "
        "and --seeds) by bioqa-compare's two-level bootstrap",
    )
    args, extra = parser.parse_known_args(argv)
    config = ROOT / "configs" / f"{args.recipe}-smollm2.yaml"
    paths = split_source(args.recipe)
    out = WORK / args.recipe / args.phase
    if args.phase == "timing":
        return timing(config, paths["all"], out, extra)
    train, validation, scored = phase_parts(args.phase, selects_checkpoint(config), paths)
    common = ["--test_file", str(scored), "--train_file", str(train), "--split_ratios", "1", "0", "0"]
    common += ["--validation_file", str(validation)] if validation else []
    zero = run(
        [*PREDICT, *common, *answer_flags(config), "--output_dir", str(out / "zero-shot"), "--overwrite_output_dir"]
    )
    if not args.seeds:
        tuned = run([*TRAIN, str(config), *common, "--output_dir", str(out / "fine-tuned"), *extra])
        compare(out, "fine-tuned")
        report(out, "fine-tuned", args, zero, tuned)
        return 0
    # one study: load_models.py --seeds trains seeds/seed-N and summarises them in seeds/seeds.md
    seeds = [str(seed) for seed in args.seeds]
    tuned = run([*TRAIN, str(config), *common, "--seeds", *seeds, "--output_dir", str(out / "seeds"), *extra])
    names = [f"seeds/seed-{seed}" for seed in seeds]
    for name in names:
        compare(out, name)
        report(out, name, args, zero, tuned / len(names))
    print(seed_spread(out, names))
    print((out / "seeds" / "seeds.md").read_text(encoding="utf-8"))
    if args.compare_to:
        compare_studies(WORK / args.compare_to / args.phase / "seeds", out / "seeds", out / f"vs-{args.compare_to}")
    return 0


def compare_studies(baseline: Path, candidate: Path, report: Path) -> None:
    """Two recipes' seeds studies on the same questions: bioqa-compare's two-level bootstrap (seeds, then questions)."""
    names = ["--baseline_name", baseline.parent.parent.name, "--candidate_name", candidate.parent.parent.name]
    sides = ["--baseline", str(baseline), "--candidate", str(candidate), *names]
    run(["-m", "bioqa.comparison", *sides, "--output_dir", str(report), "--overwrite"])
    print((report / "report.md").read_text(encoding="utf-8"))


PREDICT = ["load_models.py", "--do_predict"]
TRAIN = ["load_models.py", "--do_train", "--do_predict", "--overwrite_output_dir", "--report_to", "none", "--config"]
ONE_EPOCH_NO_EVALUATION = (
    "--num_train_epochs 1 --eval_strategy no --save_strategy no --load_best_model_at_end false".split()
)


def selects_checkpoint(config: Path) -> bool:
    """Whether the recipe keeps its best checkpoint by a validation metric (which then needs a part of its own)."""
    return bool(load_yaml(read_text(config, "the recipe")).get("load_best_model_at_end"))


def phase_parts(phase: str, selects: bool, paths: dict[str, Path]) -> tuple[Path, Path | None, Path]:
    """Training, validation and scored files of a phase: the validation part that picks a checkpoint is neither
    trained on nor scored, so the scored part stays held out from every choice."""
    if "validation" in paths:  # a source split already (MCQ): its own validation file serves the evaluations
        return paths["train"], paths["validation"], paths[phase]
    if selects:
        train, validation, scored = {
            "dev": ("train-rest", "dev2", "dev"),
            "dev2": ("train-rest", "dev", "dev2"),
            "test": ("train", "dev", "test"),
        }[phase]
    else:
        train, validation, scored = {"dev": ("train", None, "dev"), "dev2": ("train2", None, "dev2")}.get(
            phase, ("train+dev", None, "test")
        )
    return paths[train], paths[validation] if validation else None, paths[scored]


def timing(config: Path, data: Path, out: Path, extra: list[str]) -> int:
    """One epoch over every example, training only: comparable with TRL's one epoch over the same 500."""
    seconds = run(
        [
            "load_models.py",
            "--config",
            str(config),
            "--do_train",
            "--train_file",
            str(data),
            "--split_ratios",
            "1",
            "0",
            "0",
            *ONE_EPOCH_NO_EVALUATION,
            "--output_dir",
            str(out / "fine-tuned"),
            "--overwrite_output_dir",
            "--report_to",
            "none",
            *extra,
        ]
    )
    metrics = json.loads((out / "fine-tuned" / "metrics.json").read_text())
    print(f"one epoch over all examples: train_runtime {metrics['train_runtime']:.0f} s; command {seconds:.0f} s")
    return 0


def report_folder(out: Path, name: str) -> Path:
    return out / f"report-{name.replace('/', '-')}"


def compare(out: Path, name: str) -> None:
    baseline, candidate = out / "zero-shot" / "predictions.jsonl", out / name / "predictions.jsonl"
    command = ["-m", "bioqa.comparison", "--baseline", str(baseline), "--candidate", str(candidate)]
    run([*command, "--output_dir", str(report_folder(out, name)), "--overwrite"])


def seed_spread(out: Path, names: list[str]) -> str:
    """Each seed's fine-tuned ROUGE-L and METEOR with the METEOR difference's interval, then mean and range."""
    lines, found = ["\n| run | ROUGE-L | METEOR | METEOR difference [95% CI] |", "|---|---|---|---|"], {}
    for name in names:
        metrics = json.loads((report_folder(out, name) / "comparison.json").read_text())["metrics"]
        rouge, meteor = metrics["rougeL"], metrics["meteor"]
        found[name] = (rouge["candidate"], meteor["candidate"])
        lines.append(
            f"| {name} | {rouge['candidate']:.4f} | {meteor['candidate']:.4f} | "
            f"{meteor['difference']:+.4f} [{meteor['ci_low']:+.4f}, {meteor['ci_high']:+.4f}] |"
        )
    for label, column in (("mean", statistics.fmean), ("spread (max - min)", lambda v: max(v) - min(v))):
        rouge, meteor_ = (column([v[i] for v in found.values()]) for i in (0, 1))
        lines.append(f"| {label} | {rouge:.4f} | {meteor_:.4f} | |")
    return "\n".join(lines)


def report(out: Path, name: str, args: argparse.Namespace, zero: float, tuned: float) -> None:
    comparison = json.loads((report_folder(out, name) / "comparison.json").read_text())
    train = json.loads((out / name / "metrics.json").read_text())
    manifest = json.loads((out / name / "run_manifest.json").read_text())
    print(
        f"\n{args.recipe}, phase {args.phase}, {name}: {manifest['split_sizes']['train']} training examples, "
        f"{comparison['num_examples']} scored; train_runtime {train['train_runtime']:.0f} s "
        f"(zero-shot command {zero:.0f} s, fine-tune command {tuned:.0f} s)\n"
    )
    print(scores_table(comparison, tuple(comparison["names"])))
    lengths = comparison["lengths"]
    print(
        f"\nmean answer words: zero-shot {lengths['baseline']['mean_words']:.1f}, fine-tuned "
        f"{lengths['candidate']['mean_words']:.1f}, references {lengths['baseline']['reference_mean_words']:.1f}"
    )
    if comparison["labels"]:
        label_report(out, name, comparison)


def label_report(out: Path, name: str, comparison: dict) -> None:
    """McNemar, the majority-class baseline, and (for a label-then-answer target) the answer after the label."""
    labels = comparison["label_set"]
    folders = {"zero-shot": "zero-shot", "fine-tuned": name}
    rows = {system: read_rows(out / folder / "predictions.jsonl") for system, folder in folders.items()}
    for kind, found in comparison["labels"].items():
        test = found["mcnemar"]
        print(
            f"labels {kind}: McNemar exact p = {test['p_value']:.3g} ({test['baseline_only_right']} only zero-shot "
            f"right, {test['candidate_only_right']} only fine-tuned right)"
        )
    gold = [row["label"] for row in rows["fine-tuned"]]
    counts = json.loads((out / name / "run_manifest.json").read_text())["label_counts"]["train"]
    majority = max(counts, key=counts.get)
    baseline = metrics_utils.label_metrics([majority] * len(gold), gold, labels)
    print(
        f"majority class ({majority!r} of the training split): accuracy {baseline['accuracy']:.4f}, "
        f"macro-F1 {baseline['macro_f1']:.4f}"
    )
    if read_run_config(out / name / "run_config.yaml")["target"] == "label_then_answer":
        answer_part(rows, labels)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in text_lines(path.read_text(encoding="utf-8"))]


def answer_part(rows: dict[str, list[dict]], labels: list[str]) -> None:
    """ROUGE-L and METEOR of the answer after its label (the label stripped from the prediction; the reference is
    the data's answer), zero-shot against fine-tuned."""
    stripped = {
        name: (
            [metrics_utils.strip_label(r["prediction"], labels) for r in part],
            [r["reference"] for r in part],  # the data's answer: no label to strip (and "No change ..." keeps its No)
        )
        for name, part in rows.items()
    }
    scores = {
        name: metrics_utils.score_predictions(p, r, metrics=("rouge", "meteor")) for name, (p, r) in stripped.items()
    }
    test = metrics_utils.paired_bootstrap(scores["zero-shot"], scores["fine-tuned"], 1000, seed=0)
    for metric in ("rougeL", "meteor"):
        t = test[metric]
        print(
            f"answer after the label, {metric}: zero-shot {scores['zero-shot'].corpus()[metric]:.4f} -> fine-tuned "
            f"{scores['fine-tuned'].corpus()[metric]:.4f}, difference {t['difference']:+.4f} "
            f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]"
        )


if __name__ == "__main__":
    sys.exit(main())
