"""The Trainer, with ROUGE / BLEU / METEOR on generated answers at every evaluation.

`BioQATrainer` calls a `bioqa.train.evaluator.GenerationEvaluator` inside `evaluation_loop`, so its
`eval_rougeL`, `eval_bleu`, ... join `eval_loss` before the Trainer logs (console, TensorBoard,
`log_history`), runs callbacks and picks the best checkpoint: a TrainerCallback's `on_evaluate`
would come after the log is written.

It batches examples of similar length (`bioqa.train.sampler`); the loss on answer tokens only comes from
`bioqa.train.loss` through the collator and `compute_loss_func` the command passes (with Liger's kernels, the model's
own loss over the same positions: `AnswerOnlyCollator(shift_labels=True)`). On a CPU under mixed precision
its forward skips PEFT's float32 copies of LoRA inputs (`compute_loss_context_manager`). The checks of the loss
(`training_step`) and of the gradient norm the Trainer computes anyway (`_get_grad_norm`) stop at the
first NaN or infinity; `CheckpointOnSignal` turns SIGINT / SIGTERM / SIGHUP into a checkpoint and a clean stop.

A process trains on one GPU: several processes come from torchrun / accelerate launch, never from
`nn.DataParallel` (`one_gpu_per_process`). An evaluation that runs out of memory even one prompt at a time saves
the step's checkpoint before it stops the run (the Trainer evaluates before it saves).
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from bioqa import compat
from bioqa.errors import InputError, RunError, option, option_off, stop_signals
from bioqa.generate import backends
from bioqa.generate.batches import OutOfMemory
from bioqa.io.files import write_text_atomic
from bioqa.io.inventory import record
from bioqa.io.outputs import TRAINING_OUTPUT
from bioqa.train.evaluator import GenerationEvaluator
from bioqa.train.sampler import LengthGroupedBatches

log = logging.getLogger("bioqa")


class BioQATrainer(Trainer):
    """The Trainer with generation-based evaluation and length-grouped batches (module docstring)."""

    def __init__(self, *args: Any, generation_evaluator: GenerationEvaluator | None = None, **kwargs: Any):
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if training_args is not None:
            one_gpu_per_process(training_args)  # before the Trainer sizes its batches by the GPU count
        super().__init__(*args, **kwargs)
        self.generation_evaluator = generation_evaluator
        self.predictions_name: str | None = None  # set by evaluate_final
        self.last_predictions: str | None = None  # predictions/<name>.jsonl of the latest generation evaluation
        self.evaluations: dict[int, tuple[dict[str, float], str | None]] = {}  # step -> (metrics, predictions)
        if generation_evaluator is not None and self.shards_weights():
            raise InputError(
                "generation-based evaluation needs whole weights in every process, but FSDP / DeepSpeed "
                f"ZeRO-3 shards them; pass {option_off('generation_eval')} (and score with {option('do_predict')} "
                "after training), "
                "or train with DDP or ZeRO-2 (docs/DISTRIBUTED.md)"
            )

    def shards_weights(self) -> bool:
        """FSDP or DeepSpeed ZeRO-3: no process holds the whole model, so generate() cannot run as is."""
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return bool(self.is_fsdp_enabled or (plugin is not None and getattr(plugin, "zero_stage", 0) == 3))

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if eval_dataset is None and metric_key_prefix == "eval":  # the validation split, as training evaluates it
            self.evaluations[self.state.global_step] = (metrics, self.last_predictions)
        return metrics

    def evaluate_final(self) -> dict[str, float]:
        """The evaluation of the adapter training ends with (the best one under load_best_model_at_end).
        Its answers go to predictions/eval-final.jsonl: at the last step's number they would
        overwrite that evaluation's own file, which may hold another adapter's answers. When this
        process evaluated those very weights during training, that evaluation is logged again
        instead of being recomputed (the same weights give the same scores, and an evaluation
        of generated answers can take minutes)."""
        step = self.kept_step()
        if step in self.evaluations:
            metrics, predictions = self.evaluations[step]
            log.info(
                "final evaluation: the kept adapter's scores from step %d (the same weights, not recomputed)", step
            )
            self.log(dict(metrics))
            self.last_predictions = predictions and self.copy_predictions(predictions)
            return metrics
        self.predictions_name = "eval-final"
        try:
            return self.evaluate()
        finally:
            self.predictions_name = None

    def kept_step(self) -> int | None:
        """The step whose weights training ended with: the best checkpoint's when the Trainer loaded it at the
        end (load_best_model_at_end, with a best checkpoint on record), else the last step's."""
        if self.args.load_best_model_at_end and self.state.best_model_checkpoint is not None:
            return self.state.best_global_step  # the step the Trainer named that checkpoint after
        return self.state.global_step

    def copy_predictions(self, predictions: str) -> str:
        """predictions/eval-final.jsonl as a copy of an evaluation's answers (written by the main process)."""
        final = "predictions/eval-final.jsonl"
        if self.is_world_process_zero():
            out = Path(self.args.output_dir)
            write_text_atomic(out / final, (out / predictions).read_text(encoding="utf-8"))
            record(out, TRAINING_OUTPUT, final)
        return final

    def _save_checkpoint(self, model, trial):
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        try:
            super()._save_checkpoint(model, trial)
        except BaseException:  # a full disk, a signal: a half-written checkpoint must not pass for one
            if self.is_world_process_zero() and folder.is_dir() and not (folder / "trainer_state.json").is_file():
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if self.accelerator.num_processes > 1:  # every process writes its own RNG state into the checkpoint
            self.accelerator.wait_for_everyone()
        if self.is_world_process_zero():
            self.record_written(f"checkpoint-{self.state.global_step}")

    def record_written(self, *paths: str) -> None:
        """Record `paths` and the TensorBoard logs of this run in the output folder's inventory (bioqa.io.inventory):
        what --overwrite_output_dir may later delete."""
        out = Path(self.args.output_dir)
        logs = [
            Path(cb.logging_dir).resolve().relative_to(out.resolve()).as_posix()
            for cb in self.callback_handler.callbacks
            if getattr(cb, "logging_dir", None) and out.resolve() in Path(cb.logging_dir).resolve().parents
        ]
        record(out, TRAINING_OUTPUT, *paths, *logs)

    def compute_loss_context_manager(self):
        stack = super().compute_loss_context_manager()
        half = self.args.bf16 or self.args.fp16
        measured = backends.backend_for(self.args.device.type).lora_input_casts_off
        lora = getattr(getattr(self.model, "active_peft_config", None), "peft_type", None) == "LORA"
        if half and measured and lora and not self.args.activation_checkpointing:
            # Under mixed precision accelerate runs the forward in autocast, which gives every matrix product its
            # half-precision inputs anyway; PEFT would first cast each LoRA layer's input to the adapter's float32
            # (a copy of the activations in and out of every layer): 1.15x a CPU step, the same loss and gradients;
            # measured on a CPU only, so on the CPU only (bioqa.generate.backends).
            # Not with activation checkpointing: its recomputation runs after this block, with PEFT's casts back.
            # LoRA layers only: peft's other layers have no such cast to turn off.
            from peft.helpers import disable_input_dtype_casting

            stack.enter_context(disable_input_dtype_casting(self.model))
        return stack

    def training_step(self, model, inputs, num_items_in_batch=None):
        import torch

        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise NonFiniteError(non_finite_message("the loss", self.state.global_step + 1, self.args.output_dir))
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        # Under fp16 an infinite gradient is routine (the loss scaler skips that step): only bf16 / fp32 are checked.
        grad_norm = super()._get_grad_norm(model, grad_norm)
        if not self.args.fp16 and grad_norm is not None and not math.isfinite(float(grad_norm)):
            raise NonFiniteError(
                non_finite_message("the gradient norm", self.state.global_step + 1, self.args.output_dir)
            )
        return grad_norm

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or "input_ids" not in getattr(
            dataset, "column_names", ()
        ):
            return super()._get_train_sampler(train_dataset)
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedBatches([len(ids) for ids in dataset["input_ids"]], batch, self.args.seed)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        evaluating = metric_key_prefix.startswith("eval")  # not trainer.predict() on a test set
        if evaluating and self.generation_evaluator is not None and len(self.generation_evaluator):
            model = self.accelerator.unwrap_model(self.model)
            file_name = self.predictions_name or f"eval-step-{self.state.global_step}"
            try:
                scores = self.generation_evaluator.evaluate(model, file_name)
            except OutOfMemory as exc:
                raise OutOfMemory(f"{exc}; {self.checkpoint_before_stopping()}") from None
            self.last_predictions = f"predictions/{file_name}.jsonl"
            output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in scores.items()})
        return output

    def checkpoint_before_stopping(self) -> str:
        """A checkpoint of this step, unless one is on disk (the Trainer evaluates before it saves, so an error in
        an evaluation would lose the epoch's training); where it is and how to go on."""
        if self.state.global_step == 0:
            return "nothing was trained yet"
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        if not (folder / "trainer_state.json").is_file():
            if self.accelerator.num_processes > 1:  # a save is collective: one process alone would wait forever
                return "no checkpoint of this step was saved (every process of a multi-process run saves together)"
            self._save_checkpoint(self.model, trial=None)  # the Trainer's own save of a step (transformers 5.23)
        resume = option("resume_from_checkpoint")
        return f"the checkpoint of step {self.state.global_step} is in {folder}: go on with {resume} latest"


def one_gpu_per_process(args: Any) -> None:
    """One GPU for a process that was not launched distributed. On a host with several, transformers' Trainer would
    wrap the model in nn.DataParallel, which splits every tensor of the batch along its first dimension, the
    answer positions (`logits_to_keep`) too: each replica's logits would cover K/n of the K positions the loss
    scores. Several GPUs are used through torchrun / accelerate launch (DDP, FSDP, DeepSpeed) instead."""
    gpus = args.n_gpu
    if gpus > 1:
        compat.use_one_gpu(args)
        log.warning(
            "%d GPUs are visible but this process was not launched distributed: it trains on %s only; to train "
            "on all %d, start it with torchrun or accelerate launch, one process per GPU (docs/DISTRIBUTED.md)",
            gpus,
            args.device,
            gpus,
        )


# ----------------------------------------------------------------------------- never lose a run


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders whose save finished (the Trainer writes trainer_state.json last), oldest first."""
    folder = Path(output_dir)
    found = [
        p
        for p in folder.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


class NonFiniteError(RunError):
    """The loss or the gradient norm became NaN or infinite."""


def non_finite_message(what: str, step: int, output_dir: str) -> str:
    good = complete_checkpoints(output_dir)
    kept = f"the last good checkpoint is {good[-1]}" if good else "no checkpoint was saved before it"
    return (
        f"{what} became NaN or infinite at step {step}; training stopped and {kept}; try a lower "
        f"{option('learning_rate')}, "
        f"{option('precision')} bf16 or fp32 instead of fp16, or {option('max_grad_norm')} 1.0"
    )


class CheckpointOnSignal(TrainerCallback):
    """SIGINT, SIGTERM or SIGHUP: finish the current step, save a checkpoint, and stop training cleanly."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def on_train_begin(self, args, state, control, **kwargs):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in stop_signals():
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        import signal

        self.received = signal.Signals(signum).name
        log.warning("%s received: saving a checkpoint at the end of this step, then stopping", self.received)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.restore_handlers()

    def restore_handlers(self) -> None:
        """The signal handlers as they were before training (again: nothing)."""
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class AdaLoraBudget(TrainerCallback):
    """AdaLoRA moves its rank budget between layers after each optimizer step, from the gradients still there
    (before they are zeroed), as peft's own training loop does; the Trainer has no such call."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)
