"""Fine-tune language models for biomedical question answering with LoRA, score their answers, compare, merge.

The Python API (bioqa/api.py) from a notebook:

    import bioqa
    result = bioqa.compare("zero-shot/predictions.jsonl", "fine-tuned/predictions.jsonl", "report")
    bioqa.score(["Metformin lowers glucose."], ["Metformin lowers blood glucose."])
    bioqa.merge("outputs/run1")  # the adapter merged into its base, verified, in outputs/run1-merged

Below it, library modules (data, prompts, metrics, merging, ...) and the command-line layer (`bioqa.cli`);
`metrics_utils` re-exports `bioqa.metrics`. Importing the package loads nothing: each name loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for a reader's editor; at run time each name is loaded on first use
    from bioqa.api import Comparison, compare, merge, score
    from bioqa.errors import InputError, RunError
    from bioqa.merge_run import MergeReport

_EXPORTS = {
    "compare": "bioqa.api",
    "score": "bioqa.api",
    "Comparison": "bioqa.api",
    "merge": "bioqa.api",
    "MergeReport": "bioqa.merge_run",
    "InputError": "bioqa.errors",
    "RunError": "bioqa.errors",
}
__all__ = [
    "compare",
    "score",
    "Comparison",
    "merge",
    "MergeReport",
    "InputError",
    "RunError",
]  # = _EXPORTS (a test checks)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bioqa' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
