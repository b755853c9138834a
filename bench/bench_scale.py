"""Benchmark: a large file of short examples through `load_models.py`, as a user would run it.

    python bench/bench_scale.py [--examples 200000]      (make bench-scale)

Writes --examples one-line question-answer pairs (distinct questions, a few words each) to a temporary
.jsonl and runs, in a fresh process, `load_models.py --do_train --max_steps 1 --eval_strategy no
--no_generation_eval --save_strategy no` on SmolLM2-135M-Instruct (models/, from `make model`), so that
almost all of the time is reading, splitting and tokenising the data. Reports the wall time and the peak
resident memory of that process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bioqa.paths import local_default_model

ROOT = Path(__file__).resolve().parent.parent


def write_examples(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            record = {"question": f"Does drug {i} lower glucose in trial {i % 97}?", "answer": f"Yes, by {i % 13}%."}
            handle.write(json.dumps(record) + "\n")


def run(examples: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "many.jsonl"
        write_examples(data, examples)
        command = [
            sys.executable,
            "load_models.py",
            *("--model_name_or_path", str(local_default_model()), "--train_file", str(data)),
            *("--output_dir", str(Path(folder) / "out"), "--do_train", "--max_steps", "1"),
            *("--eval_strategy", "no", "--no_generation_eval", "--save_strategy", "no", "--report_to", "none"),
        ]
        start = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
    return {"examples": examples, "wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200_000)
    args = parser.parse_args()
    result = run(args.examples)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
