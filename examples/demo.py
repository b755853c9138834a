"""The whole pipeline on the embedded default, offline: what `make demo` runs.

    python examples/demo.py [--output_dir outputs/demo] [--config configs/demo-smollm2-cpu.yaml] [extra flags]

1. zero-shot: SmolLM2-135M-Instruct answers the bundled test questions (data/bioqa/test.jsonl);
2. fine-tune: LoRA training with generation-based evaluation, then the trained adapter answers the
   same questions (load_models.py --do_train --do_predict with the demo recipe);
3. compare: paired bootstrap of the two prediction files, report.md and plots;
4. merge: the adapter merged into the base and verified from disk.
Each step is one of the toolkit's commands, run as a user would; flags after the known ones go to
the training step (e.g. --num_train_epochs 2). Rerunning replaces the previous demo outputs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bioqa.config import answer_flags
from bioqa.evaluate.report import scores_table

ROOT = Path(__file__).resolve().parent.parent


def step(title: str, command: list[str]) -> float:
    """Run one command of the pipeline, streaming its log; stop the demo if it fails."""
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    if subprocess.run([sys.executable, *command], cwd=ROOT).returncode != 0:
        raise SystemExit(f"error: demo step '{title}' failed (its log is above); fix that and rerun `make demo`")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/demo"), help="where the four steps write")
    parser.add_argument("--config", type=Path, default=Path("configs/demo-smollm2-cpu.yaml"), help="training recipe")
    parser.add_argument("--max_predict_samples", type=int, help="answer only this many test questions (both systems)")
    args, training_flags = parser.parse_known_args(argv)
    out, recipe = args.output_dir, str(args.config)
    test_file = ["--test_file", "data/bioqa/test.jsonl"]
    if args.max_predict_samples:
        test_file += ["--max_predict_samples", str(args.max_predict_samples)]
        training_flags += ["--max_predict_samples", str(args.max_predict_samples)]
    timings = {
        "zero-shot": step(
            "1/4 zero-shot answers of the base model",
            [
                "load_models.py",
                "--do_predict",
                *test_file,
                *answer_flags(args.config),  # zero-shot and fine-tuned answers produced alike
                "--output_dir",
                str(out / "zero-shot"),
                "--overwrite_output_dir",
            ],
        ),
        "fine-tune": step(
            "2/4 LoRA fine-tuning, then answers of the fine-tuned model",
            [
                "load_models.py",
                "--config",
                recipe,
                "--do_train",
                "--do_predict",
                "--output_dir",
                str(out / "fine-tuned"),
                "--overwrite_output_dir",
                *training_flags,
            ],
        ),
        "compare": step(
            "3/4 comparison with paired bootstrap intervals",
            [
                "-m",
                "bioqa.comparison",
                "--baseline",
                str(out / "zero-shot" / "predictions.jsonl"),
                "--candidate",
                str(out / "fine-tuned" / "predictions.jsonl"),
                "--output_dir",
                str(out / "report"),
                "--overwrite",
            ],
        ),
        "merge": step(
            "4/4 verified merge of the adapter into the base",
            [
                "merge_base_and_adapt_ft_models.py",
                "--adapter_dir",
                str(out / "fine-tuned"),
                "--output_dir",
                str(out / "merged"),
                "--overwrite",
            ],
        ),
    }
    summary(out, timings)
    return 0


def summary(out: Path, timings: dict[str, float]) -> None:
    comparison = json.loads((out / "report" / "comparison.json").read_text())
    print(f"\n=== before / after (test questions: {comparison['num_examples']}; BLEU 0-100, the others 0-1)\n")
    print(scores_table(comparison, tuple(comparison["names"]), scales=False))
    print(f"\nzero-shot answers:  {out / 'zero-shot' / 'predictions.jsonl'}")
    print(f"adapter and run:    {out / 'fine-tuned'} (metrics.json, run_manifest.json, predictions/, runs/)")
    print(f"report and plots:   {out / 'report' / 'report.md'}")
    print(f"merged model:       {out / 'merged'} (merge_report.json)")
    print(
        "time per step: "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
        + f"; total {sum(timings.values()):.0f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
