"""Fine-tune language models for biomedical question answering with LoRA, score their answers, compare, merge.

The Python API from a notebook (examples/notebook.py runs the whole pipeline):

    import bioqa
    recipe = bioqa.Recipe.from_yaml("configs/demo-smollm2-cpu.yaml", output_dir="outputs/run1")
    zero_shot = bioqa.predict(recipe.replace(output_dir="outputs/zero-shot"))
    run = bioqa.finetune(recipe.replace(do_predict=True))   # run.metrics, run.validation, run.predictions
    study = bioqa.finetune_seeds(recipe.replace(do_predict=True), seeds=[1, 2, 3])  # study.summary["mean"]
    result = bioqa.compare(zero_shot, run.predictions, "outputs/report")
    bioqa.merge(run)  # the adapter merged into its base, verified, in outputs/run1-merged
    bioqa.score(["Metformin lowers glucose."], ["Metformin lowers blood glucose."])

Below it, library modules (data, prompts, metrics, merging, ...) and the command-line layer (`bioqa.cli`);
`metrics_utils` re-exports `bioqa.evaluate.metrics`. Importing the package loads nothing: each name loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for a reader's editor; at run time each name is loaded on first use
    from bioqa.api import Comparison, compare, merge, score
    from bioqa.errors import InputError, RunError
    from bioqa.finetuning import finetune, predict
    from bioqa.merge_run import MergeReport
    from bioqa.recipe import Recipe
    from bioqa.results import Predictions, Run, Seeds
    from bioqa.seeds import finetune_seeds

_EXPORTS = {
    "Recipe": "bioqa.recipe",
    "finetune": "bioqa.finetuning",
    "Run": "bioqa.results",
    "predict": "bioqa.finetuning",
    "Predictions": "bioqa.results",
    "finetune_seeds": "bioqa.seeds",
    "Seeds": "bioqa.results",
    "compare": "bioqa.api",
    "score": "bioqa.api",
    "Comparison": "bioqa.api",
    "merge": "bioqa.api",
    "MergeReport": "bioqa.merge_run",
    "InputError": "bioqa.errors",
    "RunError": "bioqa.errors",
}
__all__ = [
    "Recipe",
    "finetune",
    "Run",
    "predict",
    "Predictions",
    "finetune_seeds",
    "Seeds",
    "compare",
    "score",
    "Comparison",
    "merge",
    "MergeReport",
    "InputError",
    "RunError",
]  # = _EXPORTS (a test checks)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))  # the lazy names too, for a notebook's completion


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bioqa' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
