"""Score text files from the shell with metrics_utils: one prediction and one reference per line.

    python -m bioqa.score --predictions preds.txt --references refs.txt [--metrics rouge bleu] \\
        [--bootstrap_samples 1000]

Prints the corpus scores (ROUGE and METEOR 0-1, BLEU 0-100) as JSON. Line i of --predictions is
scored against line i of --references; several references per prediction: give several files,
`--references refs1.txt refs2.txt` (of equal length).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bioqa.cli.runner import run_main
from bioqa.config import build_parser, parse_arguments
from bioqa.errors import InputError
from bioqa.evaluate.metrics import DEFAULT_METRICS, compute_metrics, metric_names, unknown_metrics
from bioqa.evaluate.scorers import MissingNLTKDataError
from bioqa.io.files import read_text, text_lines


@dataclass
class ScoreArguments:
    predictions: str = field(metadata={"help": "Text file of predictions, one per line."})
    references: list[str] = field(
        metadata={"help": "Text file(s) of references, one per line; several files = several references."}
    )
    metrics: list[str] = field(
        default_factory=lambda: list(DEFAULT_METRICS), metadata={"help": f"Any of {', '.join(metric_names())}."}
    )
    bootstrap_samples: int = field(
        default=0, metadata={"help": "Add seeded bootstrap 95 percent intervals with this many resamples."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})


def read_lines(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path} does not exist or is not a file; give a text file with one text per line")
    return text_lines(read_text(file))  # \n only: a U+2028 inside a line must not shift the pairing


def run(argv: list[str] | None) -> int:
    args = parse_arguments(build_parser([ScoreArguments], description=__doc__.split("\n\n")[0]), argv)[0]
    if args.bootstrap_samples < 0:
        raise InputError(f"--bootstrap_samples must be 0 (no intervals) or more, got {args.bootstrap_samples}")
    unknown = unknown_metrics(args.metrics, "--metrics")
    if unknown:
        raise InputError(unknown)
    predictions = read_lines(args.predictions)
    streams = [read_lines(path) for path in args.references]
    if any(len(stream) != len(predictions) for stream in streams):
        counts = ", ".join(f"{path}: {len(stream)}" for path, stream in zip(args.references, streams))
        raise InputError(
            f"{args.predictions} has {len(predictions)} lines but the references have {counts}; "
            "give files with one line per example"
        )
    references = [list(refs) if len(refs) > 1 else refs[0] for refs in zip(*streams)]
    try:
        result = compute_metrics(
            predictions,
            references,
            metrics=tuple(args.metrics),
            bootstrap_samples=args.bootstrap_samples,
            seed=args.seed,
        )
    except (ValueError, MissingNLTKDataError) as exc:
        raise InputError(str(exc)) from None
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
