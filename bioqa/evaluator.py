"""ROUGE / BLEU / METEOR on generated answers, for the evaluations during training.

`GenerationEvaluator` generates answers for a fixed, seeded subset of the validation split from the
prompts alone, scores them with the toolkit's metrics, and writes `predictions/eval-step-N.jsonl`
(`predictions/eval-final.jsonl` for the evaluation after training).

With several processes (torchrun / accelerate launch), each process generates for its own share of
the subset, the main process gathers them, scores each example once, writes the file, and sends
the scores to the others, so every process logs and selects checkpoints on the same numbers.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioqa.data import Example
from bioqa.files import write_jsonl_atomic
from bioqa.generation import GenerationSettings, generate_answers_sharded
from bioqa.predictions import generation_prompts, score_rows
from bioqa.prompts import PromptFormat

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class GenerationEvaluator:
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        fmt: PromptFormat,
        examples: list[Example],
        settings: GenerationSettings,
        *,
        samples: int,
        seed: int,
        max_seq_length: int,
        metrics: list[str],
        output_dir: Path,
    ):
        chosen = examples if samples <= 0 or samples >= len(examples) else random.Random(seed).sample(examples, samples)
        self.examples, self.prompts = generation_prompts(
            tokenizer, fmt, chosen, max_seq_length, settings.max_new_tokens
        )
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
