"""Benchmark a model, an adapter or a merged folder on lm-evaluation-harness tasks, or on your own labelled file.

    bioqa-benchmark --model_name_or_path HuggingFaceTB/SmolLM2-135M-Instruct --tasks pubmedqa,medmcqa
    bioqa-benchmark --adapter_name_or_path outputs/run1 --tasks multimedqa --output_dir outputs/run1-benchmark
    bioqa-benchmark --recipe configs/mcq-smollm2.yaml --tasks local      # offline: the recipe's labelled test split

Writes benchmark_predictions.jsonl (every question), benchmark.json and benchmark.md (accuracy per task with
bootstrap 95% intervals) to --output_dir.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from bioqa.benchmark.run import BenchmarkArguments, benchmark
from bioqa.cli.runner import run_main
from bioqa.config import build_parser, parse_arguments, recipe_flags
from bioqa.settings import DataArguments, ModelArguments, PromptArguments

SECTIONS = (BenchmarkArguments, ModelArguments, DataArguments, PromptArguments)


def with_recipe(argv: list[str]) -> list[str]:
    """`argv` after the flags of the --recipe it names (model, data and prompt settings), so flags given win."""
    if "--recipe" not in argv or argv.index("--recipe") + 1 >= len(argv):
        return argv
    names = {f.name for section in SECTIONS[1:] for f in dataclasses.fields(section)}
    return recipe_flags(Path(argv[argv.index("--recipe") + 1]), names) + argv


def run(argv: list[str] | None) -> int:
    parser = build_parser(SECTIONS, description=__doc__.split("\n\n")[0], prog="bioqa-benchmark")
    args, model, data, prompt = parse_arguments(parser, with_recipe(list(sys.argv[1:] if argv is None else argv)))
    done = benchmark(args, model, data, prompt)
    print(done.table)
    print(f"results: {done.output_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
