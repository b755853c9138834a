"""What `bioqa.finetune` and `bioqa.predict` return: views of the files a run wrote (the same files the commands
write), each read when first asked for and then kept; a new call gives a new view."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from bioqa.data.labels import LABEL_METRICS
from bioqa.errors import InputError, option
from bioqa.evaluate.metrics import score_names
from bioqa.evaluate.predictions import PredictionRow, read_prediction_file
from bioqa.io.files import read_json, read_run_config


@dataclass(frozen=True)
class Predictions:
    """A model's answers to the test split: `rows` (predictions.jsonl), `summary` (predict_metrics.json) and
    `scores`, each metric's corpus score with its bootstrap 95% interval. `bioqa.compare` takes it as a file.

        >>> zero_shot.scores["rougeL"]   # {"score": 0.21, "ci95": [0.19, 0.23]}
        >>> bioqa.compare(zero_shot, fine_tuned)
    """

    output_dir: Path

    @property
    def path(self) -> Path:
        return self.output_dir / "predictions.jsonl"

    def __fspath__(self) -> str:
        return str(self.path)

    @cached_property
    def rows(self) -> list[PredictionRow]:
        return read_prediction_file(self.path)

    @cached_property
    def summary(self) -> dict[str, Any]:
        return read_json(self.output_dir / "predict_metrics.json", "the prediction metrics")

    @property
    def scores(self) -> dict[str, dict[str, Any]]:
        return self.summary["scores"]

    def __str__(self) -> str:
        from bioqa.model_card import scores_table

        return f"{self.summary['num_examples']} test examples, {self.path}\n{scores_table(self.scores)}"


@dataclass(frozen=True)
class Run:
    """A training run's folder: `metrics` (metrics.json: the final train and eval_* metrics), `validation` (the
    final evaluation's generated answers scored with bootstrap 95% intervals), `best_checkpoint`, `manifest`
    (run_manifest.json), `config` (run_config.yaml) and, when the run answered the test split, `predictions`.
    `bioqa.merge` takes it as the adapter's folder.

        >>> run.metrics["eval_rougeL"], run.validation["scores"]["rougeL"]["ci95"], run.best_checkpoint
    """

    output_dir: Path

    def __fspath__(self) -> str:
        return str(self.output_dir)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.output_dir / "metrics.json", "the run's metrics")

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return read_json(self.output_dir / "run_manifest.json", "the run manifest")

    @cached_property
    def config(self) -> dict[str, Any]:
        return read_run_config(self.output_dir / "run_config.yaml")

    @cached_property
    def best_checkpoint(self) -> str | None:
        """The checkpoint the metric_for_best_model chose (None without one)."""
        return read_json(self.output_dir / "trainer_state.json", "the trainer state").get("best_model_checkpoint")

    @cached_property
    def validation(self) -> dict[str, Any] | None:
        """{"num_examples": n, "scores": {metric: {"score": x, "ci95": [low, high] or None}}} of the answers the
        final evaluation generated (None when the run generated none)."""
        from bioqa.model_card import evaluation_of

        final = self.manifest.get("final_evaluation")
        if not final:
            return None
        rows = read_prediction_file(self.output_dir / final)
        return evaluation_of(rows, self.config["bootstrap_samples"], self.config["seed"], self.manifest.get("labels"))

    @cached_property
    def predictions(self) -> Predictions | None:
        found = Predictions(self.output_dir)
        return found if found.path.is_file() else None

    def __repr__(self) -> str:
        if not (self.output_dir / "metrics.json").is_file():  # a run stopped early, or another process's view
            return f"Run({str(self.output_dir)!r})"
        scores = {"eval_loss", *(f"eval_{name}" for name in (*score_names(), *LABEL_METRICS))}
        shown = {k: round(v, 4) for k, v in self.metrics.items() if k in scores and isinstance(v, (int, float))}
        return f"Run({str(self.output_dir)!r}, {', '.join(f'{k}={v}' for k, v in shown.items())})"


STUDY_FILE = "seeds.json"  # what a seeds study (load_models.py with several seeds) writes into its folder


@dataclass(frozen=True)
class Seeds:
    """A recipe trained once per seed (`--seeds 1 2 3`, or `bioqa.finetune_seeds`): `summary`
    (seeds.json: each seed's scores, their mean and standard deviation) and `runs`, each seed's `Run` in its own
    folder. `bioqa.compare` takes it (or its folder) as one side of a comparison over seeds.

        >>> study.summary["mean"]["rougeL"], study.summary["sd"]["rougeL"], study.runs[0].metrics
    """

    output_dir: Path

    def __fspath__(self) -> str:
        return str(self.output_dir)

    @cached_property
    def summary(self) -> dict[str, Any]:
        return read_json(self.output_dir / STUDY_FILE, "the seeds summary")

    @property
    def runs(self) -> list[Run]:
        return [Run(self.output_dir / run["folder"]) for run in self.summary["runs"]]

    def prediction_files(self) -> list[Path]:
        """Each seed's predictions.jsonl; InputError when a run has none (the study ran without do_predict)."""
        files = [run.output_dir / "predictions.jsonl" for run in self.runs]
        missing = next((file for file in files if not file.is_file()), None)
        if missing is not None:
            raise InputError(
                f"{missing} is missing: the seeds study in {self.output_dir} has no test predictions to compare; "
                f"train it with {option('do_predict')}, or predict each seed's adapter"
            )
        return files

    def __str__(self) -> str:
        return self.summary.get("table", f"Seeds({str(self.output_dir)!r})")
