"""ROUGE / BLEU / METEOR on generated answers, and accuracy / macro-F1 of their labels, for the evaluations
during training.

`GenerationEvaluator` answers a fixed, seeded subset of the validation split from the prompts alone
(generating, and with a label set also or instead choosing each label by log-likelihood), scores the
answers with the toolkit's metrics, and writes `predictions/eval-step-N.jsonl`
(`predictions/eval-final.jsonl` for the evaluation after training).

With several processes (torchrun / accelerate launch), each process generates for its own share of
the subset, the main process gathers them, scores each example once, writes the file, and sends
the scores to the others, so every process logs and selects checkpoints on the same numbers.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioqa.data.prompts import PromptFormat
from bioqa.data.splits import Example
from bioqa.evaluate.predictions import generation_prompts, score_rows
from bioqa.generate.generation import Answering, Answers, answer_prompts
from bioqa.io.files import write_jsonl_atomic
from bioqa.io.inventory import record
from bioqa.io.outputs import TRAINING_OUTPUT

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class GenerationEvaluator:
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        fmt: PromptFormat,
        examples: list[Example],
        how: Answering,
        *,
        samples: int,
        seed: int,
        max_seq_length: int,
        metrics: list[str],
        output_dir: Path,
        labels: tuple[str, ...] | None = None,
    ):
        chosen = examples if samples <= 0 or samples >= len(examples) else random.Random(seed).sample(examples, samples)
        self.examples, self.prompts = generation_prompts(
            tokenizer, fmt, chosen, max_seq_length, how.settings.max_new_tokens
        )
        self.tokenizer, self.how, self.metrics, self.labels = tokenizer, how, tuple(metrics), labels
        self.output_dir = Path(output_dir)

    def __len__(self) -> int:
        return len(self.examples)

    def evaluate(self, model: Any, name: str) -> dict[str, float]:
        """Answer, score and record in predictions/<name>.jsonl; returns the corpus scores
        (ROUGE / METEOR 0-1, BLEU 0-100, accuracy, macro-F1 and the unparsed share 0-1)."""
        from accelerate import PartialState

        answers = answer_prompts(model, self.tokenizer, self.prompts, self.how)
        scores = self._score_and_write(answers, name) if answers is not None else None
        if PartialState().num_processes > 1:
            from accelerate.utils import broadcast_object_list

            scores = broadcast_object_list([scores], from_process=0)[0]
        return scores

    def _score_and_write(self, answers: Answers, name: str) -> dict[str, float]:
        scored = score_rows(self.examples, answers, self.metrics, self.labels)
        write_jsonl_atomic(self.output_dir / "predictions" / f"{name}.jsonl", scored.rows)
        record(self.output_dir, TRAINING_OUTPUT, f"predictions/{name}.jsonl")
        return scored.metrics()
