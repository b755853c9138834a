"""The Trainer, with ROUGE / BLEU / METEOR on generated answers at every evaluation.

Loss on answer tokens only, and logits only where they are needed: `AnswerOnlyCollator` adds the
positions whose next token is labelled as `logits_to_keep`, so the model projects just those hidden
states onto the vocabulary, and `answer_only_loss` scores them. On long-context QA (a PubMedQA
abstract, a short answer) most positions are prompt, and the (batch x length x vocabulary) logits
were the largest tensors of a step: this made a CPU LoRA step about 1.6x faster. The loss is the
model's own (tested equal), normalised by the Trainer's token count as usual.

`GenerationEvaluator` generates answers for a fixed, seeded subset of the validation split from the
prompts alone, scores them with `metrics_utils`, and writes `predictions/eval-step-N.jsonl`
(`predictions/eval-final.jsonl` for the evaluation after training).
`BioQATrainer` calls it inside `evaluation_loop`, so its `eval_rougeL`, `eval_bleu`, ...
join `eval_loss` before the Trainer logs (console, TensorBoard, `log_history`), runs callbacks and
picks the best checkpoint: a TrainerCallback's `on_evaluate` would come after the log is written.

With several processes (torchrun / accelerate launch), each process generates for its own share of
the subset, the main process gathers them, scores each example once, writes the file, and sends
the scores to the others, so every process logs and selects checkpoints on the same numbers.

`LengthGroupedBatches` batches examples of similar length for any dataset size; the checks of the
loss (`training_step`) and of the gradient norm the Trainer computes anyway (`_get_grad_norm`)
stop at the first NaN or infinity; `StopOnSignal` turns
SIGINT / SIGTERM into a checkpoint and a clean stop.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from bioqa.generation import GenerationSettings, generate_answers_sharded
from bioqa.predictions import generation_prompts, score_rows
from bioqa.prompts import IGNORE_INDEX, PromptFormat
from bioqa.runfiles import RunError, UsageError, write_jsonl_atomic

log = logging.getLogger("bioqa")


def answer_positions(labels: Any):
    """Sequence positions whose logits predict a labelled token in any row of the batch."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)


def answer_only_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None):
    """Causal-LM cross-entropy over the kept logits (the model's loss, without the prompt's logits)."""
    import torch

    keep = answer_positions(labels)
    logits = outputs.logits.float()
    targets = labels[:, keep + 1].to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum().clamp(min=1)
    return loss / count


class AnswerOnlyCollator:
    """Pads a batch (DataCollatorForSeq2Seq) and adds `logits_to_keep` for `answer_only_loss`."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None = None):
        from transformers import DataCollatorForSeq2Seq

        self.pad = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict]) -> dict:
        batch = self.pad(features)
        batch["logits_to_keep"] = answer_positions(batch["labels"])
        return batch


class GenerationEvaluator:
    def __init__(self, tokenizer: Any, fmt: PromptFormat, examples: list[dict], settings: GenerationSettings, *,
                 samples: int, seed: int, max_seq_length: int, metrics: list[str], output_dir: Path):
        chosen = examples if samples <= 0 or samples >= len(examples) else random.Random(seed).sample(examples, samples)
        self.examples, self.prompts = generation_prompts(tokenizer, fmt, chosen, max_seq_length, settings.max_new_tokens)
        self.tokenizer, self.settings, self.metrics = tokenizer, settings, tuple(metrics)
        self.output_dir = Path(output_dir)

    def __len__(self) -> int:
        return len(self.examples)

    def evaluate(self, model: Any, name: str) -> dict[str, float]:
        """Generate, score and record in predictions/<name>.jsonl; returns the corpus scores
        (ROUGE / METEOR 0-1, BLEU 0-100)."""
        from accelerate import PartialState

        answers = generate_answers_sharded(model, self.tokenizer, self.prompts, self.settings)
        scores = self._score_and_write(answers, name) if answers is not None else None
        if PartialState().num_processes > 1:
            from accelerate.utils import broadcast_object_list

            scores = broadcast_object_list([scores], from_process=0)[0]
        return scores

    def _score_and_write(self, predictions: list[str], name: str) -> dict[str, float]:
        scores, rows = score_rows(self.examples, predictions, self.metrics)
        write_jsonl_atomic(self.output_dir / "predictions" / f"{name}.jsonl", rows)
        return {key: float(value) for key, value in scores.corpus().items() if isinstance(value, (int, float))}


class LengthGroupedBatches:
    """Sampler: batches of similar length in a random order, for any dataset size.

    As transformers' LengthGroupedSampler: shuffle, cut into mega-batches of 50 batches, sort each
    by length, longest batch first (an out-of-memory shows at once). Unlike it, a dataset of fewer
    than four mega-batches is still grouped (transformers then falls back to mega-batches of one
    batch, i.e. no grouping at all), lengths get a random +-3% jitter so batches differ between
    epochs, and the batches of a mega-batch are visited in random order.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        order = rng.sample(range(len(self.lengths)), len(self.lengths))
        size = 50 * self.batch_size
        batches = []
        for start in range(0, len(order), size):
            jitter = {i: self.lengths[i] * rng.uniform(0.97, 1.03) for i in order[start:start + size]}
            mega = sorted(jitter, key=jitter.__getitem__, reverse=True)
            batches += [mega[i:i + self.batch_size] for i in range(0, len(mega), self.batch_size)]
        longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
        first = batches.pop(longest)
        rng.shuffle(batches)
        return iter([i for batch in [first, *batches] for i in batch])


class BioQATrainer(Trainer):
    """The Trainer with generation-based evaluation and length-grouped batches (module docstring)."""

    def __init__(self, *args: Any, generation_evaluator: GenerationEvaluator | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.generation_evaluator = generation_evaluator
        self.predictions_name: str | None = None  # set by evaluate_final
        if generation_evaluator is not None and self.shards_weights():
            raise UsageError("generation-based evaluation needs whole weights in every process, but FSDP / DeepSpeed "
                             "ZeRO-3 shards them; pass --no_generation_eval (and score with --do_predict after training), "
                             "or train with DDP or ZeRO-2 (docs/DISTRIBUTED.md)")

    def shards_weights(self) -> bool:
        """FSDP or DeepSpeed ZeRO-3: no process holds the whole model, so generate() cannot run as is."""
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return bool(self.is_fsdp_enabled or (plugin is not None and getattr(plugin, "zero_stage", 0) == 3))

    def evaluate_final(self) -> dict[str, float]:
        """Evaluate the adapter training ends with (the best one under load_best_model_at_end).
        Its answers go to predictions/eval-final.jsonl: at the last step's number they would
        overwrite that evaluation's own file, which may hold another adapter's answers."""
        self.predictions_name = "eval-final"
        try:
            return self.evaluate()
        finally:
            self.predictions_name = None

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
            raise NonFiniteError(non_finite_message("the gradient norm", self.state.global_step + 1, self.args.output_dir))
        return grad_norm

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or "input_ids" not in getattr(dataset, "column_names", ()):
            return super()._get_train_sampler(train_dataset)
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedBatches([len(ids) for ids in dataset["input_ids"]], batch, self.args.seed)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        evaluating = metric_key_prefix.startswith("eval")  # not trainer.predict() on a test set
        if evaluating and self.generation_evaluator is not None and len(self.generation_evaluator):
            model = self.accelerator.unwrap_model(self.model)
            file_name = self.predictions_name or f"eval-step-{self.state.global_step}"
            scores = self.generation_evaluator.evaluate(model, file_name)
            output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in scores.items()})
        return output


# ----------------------------------------------------------------------------- never lose a run


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders whose save finished (the Trainer writes trainer_state.json last), oldest first."""
    folder = Path(output_dir)
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


class NonFiniteError(RunError):
    """The loss or the gradient norm became NaN or infinite."""


def non_finite_message(what: str, step: int, output_dir: str) -> str:
    good = complete_checkpoints(output_dir)
    kept = f"the last good checkpoint is {good[-1]}" if good else "no checkpoint was saved before it"
    return (f"{what} became NaN or infinite at step {step}; training stopped and {kept}; try a lower --learning_rate, "
            "--precision bf16 or fp32 instead of fp16, or --max_grad_norm 1.0")


class StopOnSignal(TrainerCallback):
    """SIGINT or SIGTERM: finish the current step, save a checkpoint, and stop training cleanly."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def on_train_begin(self, args, state, control, **kwargs):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for name in self.SIGNALS:
                self._previous[name] = signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum, frame):
        import signal

        self.received = signal.Signals(signum).name
        log.warning("%s received: saving a checkpoint at the end of this step, then stopping", self.received)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        import signal

        for name, handler in self._previous.items():
            signal.signal(getattr(signal, name), handler)
        self._previous.clear()
