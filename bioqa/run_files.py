"""The files of a run folder that every stage shares: when writing starts (the folder is cleared of an
earlier run's own files, run_config.yaml and a first manifest are written), the manifest itself, the
model card, the final files of a training run (adapter, metrics, manifest with peak memory), which process
writes, and the upload of the finished folder (--push_to_hub)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioqa.checks import wants_training
from bioqa.data.splits import Splits
from bioqa.devices import DeviceChoice
from bioqa.errors import option
from bioqa.evaluate.predictions import read_prediction_file
from bioqa.io.files import write_json_atomic, write_text_atomic, write_yaml_atomic
from bioqa.io.hub import ADAPTER_FILES, hub_problems, push_folder, token_available
from bioqa.io.inventory import record, remove_recorded
from bioqa.io.outputs import TRAINING_OUTPUT
from bioqa.io.provenance import base_manifest, peak_device_memory_mb, peak_memory_mb, utc_now
from bioqa.model_card import adapter_card, evaluation_of
from bioqa.recipe import Recipe
from bioqa.train.modeling import hub_reachable, save_converted_adapter

if TYPE_CHECKING:
    from bioqa.train.trainer import BioQATrainer

log = logging.getLogger("bioqa")

# The final files' staging folder inside --output_dir: one name in every process, since save_model may be collective.
FINAL_STAGING = ".final-staging"


def is_main_launch_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch (or a single process), from the launcher's environment:
    asking TrainingArguments would set up its devices before --device and --precision are applied."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"))


def wait_for_every_process() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def begin_run(opts: Recipe, command: Sequence[str], choice: DeviceChoice, splits: Splits, resume: Path | None) -> dict:
    """The manifest so far (written with the final files, or when a run is interrupted)."""
    return {
        **base_manifest(command),
        "device": choice.__dict__,
        "data_sources": splits.sources,
        "split_sizes": splits.sizes(),
        "dropped_empty_answers": splits.dropped_empty,
        "leaked_questions": splits.leaked_questions,
        "labels": list(splits.labels) if splits.labels else None,
        "label_counts": splits.label_counts(),
        "seed": opts.training.seed,
        "resumed_from": str(resume) if resume else None,
    }


def start_writing(opts: Recipe, resume: Path | None, training_manifest: dict | None = None) -> None:
    """The run really starts (its inputs checked, its weights loaded): with --overwrite_output_dir the earlier run's
    own files go, and run_config.yaml is written, with, for training, a first run_manifest.json (data hashes a
    resume is checked against). Until here a failing run leaves the output folder as it was."""
    wait_for_every_process()
    out = Path(opts.training.output_dir)
    if opts.training.process_index == 0:
        if opts.output.overwrite_output_dir and not resume:
            removed = remove_recorded(out)
            if removed:
                log.info(f"{option('overwrite_output_dir')}: removed the %d files the earlier run wrote", len(removed))
        shutil.rmtree(out / FINAL_STAGING, ignore_errors=True)  # left by a run killed while saving its final files
    wait_for_every_process()
    if opts.training.process_index == 0:
        write_yaml_atomic(out / "run_config.yaml", opts.settings())
        if training_manifest is not None:
            write_json_atomic(out / "run_manifest.json", {**training_manifest, "status": "training"})
        record(out, TRAINING_OUTPUT, "run_config.yaml", "run_manifest.json")


def write_model_card(folder: Path, opts: Recipe, manifest: dict, test: dict | None = None) -> None:
    """README.md, the model card of the training output, into `folder` (the staging folder of the final files,
    or the output folder once --do_predict has scored the test split)."""
    final = manifest.get("final_evaluation")
    rows = read_prediction_file(Path(opts.training.output_dir) / final) if final else []
    validation = (
        evaluation_of(rows, opts.evaluation.bootstrap_samples, opts.training.seed, manifest.get("labels"))
        if rows
        else None
    )
    card = adapter_card(opts.training.output_dir, opts.settings(), manifest, validation, test)
    write_text_atomic(folder / "README.md", card)
    if folder == Path(opts.training.output_dir):  # else the staging folder, recorded when its files move in
        record(folder, TRAINING_OUTPUT, "README.md")


def push_problems(opts: Recipe) -> list[str]:
    """--push_to_hub uploads the finished adapter: a run that trains none, or cannot reach the Hub, is refused now."""
    if not opts.training.push_to_hub:
        return []
    if not wants_training(opts.training):
        return [
            f"{option('push_to_hub')} uploads the adapter a run trains; add {option('do_train')}, or drop "
            f"{option('push_to_hub')}"
        ]
    return hub_problems(offline=not hub_reachable(), has_token=token_available(opts.training.hub_token))


def push_output(opts: Recipe) -> None:
    out = Path(opts.training.output_dir)
    repo = opts.training.hub_model_id or out.resolve().name
    url = push_folder(
        out,
        repo,
        ADAPTER_FILES,
        token=opts.training.hub_token,
        private=opts.training.hub_private_repo,
        message=f"bioqa-lora: the adapter of {out.name}",
    )
    log.info(f"{option('push_to_hub')}: uploaded the adapter, tokenizer, model card and manifest of %s to %s", out, url)


def save_outputs(trainer: BioQATrainer, opts: Recipe, manifest: dict, metrics: dict, initial: Any = None) -> None:
    """The adapter, tokenizer, model card, trainer_state.json, metrics.json and run_manifest.json, each file atomically:
    written in a staging folder, then renamed into --output_dir (a crash never leaves a half-written file).
    `initial`: a PiSSA / OLoRA adapter as initialised (bioqa.train.modeling.save_initial_adapter), to save the
    adapter converted for the unchanged base."""
    out = Path(opts.training.output_dir)
    staging = out / FINAL_STAGING
    try:
        trainer.save_model(str(staging))  # the adapter (safetensors) and the tokenizer with its chat template
        if trainer.is_world_process_zero():
            _write_final_files(trainer, opts, staging, manifest, metrics, initial)
    except BaseException:  # a full disk, a signal: nothing half-written stays; a resume writes these again
        if trainer.is_world_process_zero():
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_final_files(
    trainer: BioQATrainer, opts: Recipe, staging: Path, manifest: dict, metrics: dict, initial: Any
) -> None:
    """The main process's part of save_outputs, once the adapter is in `staging` (inside the output folder)."""
    out = staging.parent
    save_converted_adapter(trainer.model, staging, initial)
    trainer.state.save_to_json(str(staging / "trainer_state.json"))  # the log history the comparison plots
    manifest["final_evaluation"] = trainer.last_predictions
    write_model_card(staging, opts, {**manifest, "final_metrics": metrics})  # replaces PEFT's template card
    names = sorted(file.name for file in staging.iterdir())
    for name in names:  # each recorded once in place: a failure after it leaves files --overwrite_output_dir deletes
        os.replace(staging / name, out / name)
        trainer.record_written(name)
    staging.rmdir()
    write_json_atomic(out / "metrics.json", metrics)
    peak = {"host": round(peak_memory_mb(), 1), "device": peak_device_memory_mb(trainer.args.device.type)}
    finished = {"finished_at": utc_now(), "final_metrics": metrics, "peak_memory_mb": peak}
    write_json_atomic(out / "run_manifest.json", {**manifest, **finished})
    trainer.record_written("metrics.json", "run_manifest.json")
    log.info("saved adapter, tokenizer, model card (README.md), metrics.json and run_manifest.json to %s", out)
