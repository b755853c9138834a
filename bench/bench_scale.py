"""Benchmark: a large file of short examples through `load_models.py`, as a user would run it.

    python bench/bench_scale.py [--examples 200000]      (make bench-scale)

Writes --examples one-line question-answer pairs (distinct questions, a few words each) to a temporary
.jsonl, then measures, each in a fresh process, the wall time and peak resident memory of:
- `command`: `load_models.py --do_train --max_steps 1 --eval_strategy no --no_generation_eval --save_strategy no`
  on SmolLM2-135M-Instruct (models/, from `make model`), so that almost all of the time is reading, splitting and
  tokenising the data;
- `baseline`: the same command on --baseline examples: the imports, the model (its weights in the precision the
  device trains in: bfloat16 here) and one training step, so that `command` minus `baseline` is what the data
  costs in the whole command;
- `loading_and_tokenising`: the command's own steps up to the tokenised training set (parse the flags, read and
  split the file, load the tokenizer, tokenise), stopping before the model is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bioqa.io.paths import local_default_model

ROOT = Path(__file__).resolve().parent.parent


def write_examples(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            record = {"question": f"Does drug {i} lower glucose in trial {i % 97}?", "answer": f"Yes, by {i % 13}%."}
            handle.write(json.dumps(record) + "\n")


def flags(data: Path, out: Path) -> list[str]:
    return [
        *("--model_name_or_path", str(local_default_model()), "--train_file", str(data)),
        *("--output_dir", str(out), "--do_train", "--max_steps", "1"),
        *("--eval_strategy", "no", "--no_generation_eval", "--save_strategy", "no", "--report_to", "none"),
    ]


def measured(command: list[str]) -> dict:
    """Wall time and this child's own peak resident memory (os.wait4: not the largest of all children's)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(stderr[-3000:])
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}  # kB on Linux


def loading_and_tokenising(argv: list[str]) -> None:
    """In this process: the training command's steps up to the tokenised training set, then the peak memory."""
    from bioqa.data.features import encode_splits
    from bioqa.data.prompts import prompt_format
    from bioqa.data.splits import load_splits
    from bioqa.recipe import parse_recipe as parse
    from bioqa.train.modeling import load_tokenizer

    opts = parse(argv)
    splits = load_splits(opts.data)
    tokenizer = load_tokenizer(opts.model)
    datasets, _ = encode_splits(
        tokenizer, prompt_format(tokenizer, opts.prompt), splits, opts.data.max_seq_length, False
    )
    print(f"{len(datasets['train'])} training examples tokenised", file=sys.stderr)


def run(examples: int, baseline: int) -> dict:
    result: dict = {"examples": examples}
    with tempfile.TemporaryDirectory() as folder:
        data, small, out = Path(folder) / "many.jsonl", Path(folder) / "few.jsonl", Path(folder) / "out"
        write_examples(data, examples)
        result["command"] = measured([sys.executable, "load_models.py", *flags(data, out / "command")])
        here = [sys.executable, __file__, "--loading_and_tokenising"]
        result["loading_and_tokenising"] = measured([*here, *flags(data, out / "tokenising")])
        if baseline:
            write_examples(small, baseline)
            result["baseline"] = {
                "examples": baseline,
                **measured([sys.executable, "load_models.py", *flags(small, out / "baseline")]),
            }
            result["data_in_command_mb"] = result["command"]["peak_rss_mb"] - result["baseline"]["peak_rss_mb"]
    return result


def main() -> None:
    if sys.argv[1:2] == ["--loading_and_tokenising"]:
        loading_and_tokenising(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200_000)
    parser.add_argument("--baseline", type=int, default=1_000, help="examples in the reference run (0: none)")
    args = parser.parse_args()
    print(json.dumps(run(args.examples, args.baseline), indent=2))


if __name__ == "__main__":
    main()
