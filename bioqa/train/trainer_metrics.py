"""Glue for people who evaluate inside their own `transformers.Trainer`: a `compute_metrics` that
decodes generated token ids and scores them with the toolkit's metrics. (The toolkit's own training
generates and scores through bioqa.train.evaluator instead.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bioqa.evaluate.metrics import compute_metrics
from bioqa.generate.postprocess import postprocess_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def trainer_compute_metrics(
    tokenizer: PreTrainedTokenizerBase, *, ignore_index: int = -100, **options: Any
) -> Callable[[Any], dict]:
    """A `compute_metrics` for `transformers.Trainer` / `Seq2SeqTrainer(predict_with_generate=True)`.

    The returned function takes an `EvalPrediction` whose predictions are generated token ids,
    replaces `ignore_index` and other negative ids by the pad token, decodes predictions and labels
    without special tokens, cleans them with `postprocess_text`, and returns the numeric results of
    `compute_metrics(**options)` plus `gen_len`, the mean count of non-pad generated tokens.
    """

    def compute(eval_prediction: Any) -> dict[str, float]:
        import numpy as np

        predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        if predictions.ndim != 2 or not np.issubdtype(predictions.dtype, np.integer):
            raise ValueError(
                "trainer_compute_metrics needs generated token ids (batch x length); got logits "
                "or another array: use predict_with_generate=True or the toolkit's generation callback"
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        predictions = np.where(predictions < 0, pad, predictions)
        labels = np.where((labels == ignore_index) | (labels < 0), pad, labels)
        decoded = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        targets = tokenizer.batch_decode(labels, skip_special_tokens=True)
        result = compute_metrics(
            [postprocess_text(t) for t in decoded], [postprocess_text(t) for t in targets], **options
        )
        result = {key: value for key, value in result.items() if isinstance(value, (int, float))}
        result["gen_len"] = float(np.mean(np.count_nonzero(predictions != pad, axis=1)))
        return result

    return compute
