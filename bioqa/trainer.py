"""The Trainer, with ROUGE / BLEU / METEOR on generated answers at every evaluation.

`GenerationEvaluator` generates answers for a fixed, seeded subset of the validation split from the
prompts alone, scores them with `metrics_utils`, and writes `predictions/eval-step-N.jsonl`.
`GenerationEvalTrainer` calls it inside `evaluation_loop`, so its `eval_rougeL`, `eval_bleu`, ...
join `eval_loss` before the Trainer logs (console, TensorBoard, `log_history`), runs callbacks and
picks the best checkpoint: a TrainerCallback's `on_evaluate` would come after the log is written.

With several processes (torchrun / accelerate launch), each process generates for its own share of
the subset, the main process gathers them, scores each example once, writes the file, and sends
the scores to the others, so every process logs and selects checkpoints on the same numbers.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from transformers import Trainer

import metrics_utils
from bioqa.generation import GenerationSettings, generate_answers
from bioqa.prompts import PromptFormat, fit_prompt
from bioqa.runfiles import write_jsonl_atomic

log = logging.getLogger("bioqa")
MIN_PROMPT_BUDGET = 32  # tokens a prompt may always use, however long the answers may grow


class GenerationEvaluator:
    def __init__(self, tokenizer: Any, fmt: PromptFormat, examples: list[dict], settings: GenerationSettings, *,
                 samples: int, seed: int, max_seq_length: int, metrics: list[str], output_dir: Path):
        chosen = examples if samples <= 0 or samples >= len(examples) else random.Random(seed).sample(examples, samples)
        budget = max(MIN_PROMPT_BUDGET, max_seq_length - settings.max_new_tokens)
        fitted = [(row, fit_prompt(tokenizer, fmt, row["question"], row["context"], budget)[0]) for row in chosen]
        self.examples = [row for row, ids in fitted if ids is not None]
        self.prompts = [ids for _, ids in fitted if ids is not None]
        self.tokenizer, self.settings, self.metrics = tokenizer, settings, tuple(metrics)
        self.output_dir = Path(output_dir)

    def __len__(self) -> int:
        return len(self.examples)

    def evaluate(self, model: Any, step: int, accelerator: Any = None) -> dict[str, float]:
        """Generate, score and record; returns the corpus scores (ROUGE / METEOR 0-1, BLEU 0-100)."""
        rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
        mine = list(range(rank, len(self.prompts), world))
        answers = generate_answers(model, self.tokenizer, [self.prompts[i] for i in mine], self.settings)
        pairs = list(zip(mine, answers))
        if world > 1:
            from accelerate.utils import gather_object

            pairs = gather_object(pairs)
        scores = self._score_and_write(dict(pairs), step) if rank == 0 else None
        if world > 1:
            from accelerate.utils import broadcast_object_list

            scores = broadcast_object_list([scores], from_process=0)[0]
        return scores

    def _score_and_write(self, answers: dict[int, str], step: int) -> dict[str, float]:
        predictions = [answers[i] for i in range(len(self.examples))]
        references = [row["answer"] for row in self.examples]
        scores = metrics_utils.score_predictions(predictions, references, metrics=self.metrics, num_workers=1)
        rows = [{"id": row["id"], "question": row["question"], "reference": row["answer"], "prediction": pred,
                 **{name: values[i] for name, values in scores.per_example.items()}}
                for i, (row, pred) in enumerate(zip(self.examples, predictions))]
        write_jsonl_atomic(self.output_dir / "predictions" / f"eval-step-{step}.jsonl", rows)
        corpus = scores.corpus()
        return {key: float(value) for key, value in corpus.items() if isinstance(value, (int, float))}


class GenerationEvalTrainer(Trainer):
    """A Trainer whose evaluations also score generated answers (see the module docstring)."""

    def __init__(self, *args: Any, generation_evaluator: GenerationEvaluator | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.generation_evaluator = generation_evaluator

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        evaluating = metric_key_prefix.startswith("eval")  # not trainer.predict() on a test set
        if evaluating and self.generation_evaluator is not None and len(self.generation_evaluator):
            model = self.accelerator.unwrap_model(self.model)
            scores = self.generation_evaluator.evaluate(model, self.state.global_step, self.accelerator)
            output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in scores.items()})
        return output
