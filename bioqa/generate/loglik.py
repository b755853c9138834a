"""The label an answer would start with, chosen by log-likelihood instead of generated: for questions with a label
set (yes / no / maybe, a multiple-choice question's letters), as lm-evaluation-harness scores PubMedQA and MedMCQA.

Each prompt runs once: the first token of every label comes from its last position, and the prompt's cache,
repeated once per label, feeds the labels' further tokens, so the cost is about one forward pass over the prompts
however many labels there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bioqa.generate.batches import by_length_in_batches, contiguous_head_input, left_padded, pad_id_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def label_logliks(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 32,
    progress: bool = False,
) -> list[list[float]]:
    """The log-likelihood of each continuation (a label as the answer would start) after each prompt: the sum
    of its tokens' log-probabilities (module docstring). Rows are left-padded, with position ids that start at the
    first real token, so a prompt's numbers do not depend on its batch.
    """
    import torch

    pad_id = pad_id_of(tokenizer)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), contiguous_head_input(model):  # the prompts' last position is projected alone
            return by_length_in_batches(
                prompts,
                batch_size,
                lambda batch: _batch_logliks(model, batch, continuations, pad_id),
                model.device,
                "scoring labels",
                progress,
            )
    finally:
        model.train(was_training)


def _batch_logliks(model: Any, batch: list, continuations: Sequence[Sequence[int]], pad_id: int) -> list[list[float]]:
    import torch

    input_ids, attention_mask = left_padded(batch, pad_id, model.device)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    scores = torch.stack([first[:, c[0]] for c in continuations], dim=1)  # rows x labels
    longest = max(len(c) for c in continuations)
    if longest > 1:  # the labels' later tokens, after the prompt's cache repeated once per label
        labels, rows = len(continuations), len(batch)
        inputs = torch.full((labels, longest - 1), pad_id, dtype=torch.long)
        targets = torch.zeros((labels, longest - 1), dtype=torch.long)
        present = torch.zeros((labels, longest - 1), dtype=torch.long)
        for k, c in enumerate(continuations):
            inputs[k, : len(c) - 1], targets[k, : len(c) - 1], present[k, : len(c) - 1] = (
                torch.tensor(c[:-1]),
                torch.tensor(c[1:]),
                1,
            )
        out.past_key_values.batch_repeat_interleave(labels)
        device = input_ids.device
        later = model(
            input_ids=inputs.repeat(rows, 1).to(device),
            attention_mask=torch.cat(
                [attention_mask.repeat_interleave(labels, 0), present.repeat(rows, 1).to(device)], 1
            ),
            position_ids=positions[:, -1:].repeat_interleave(labels, 0) + 1 + torch.arange(longest - 1, device=device),
            past_key_values=out.past_key_values,
        ).logits.float()
        picked = torch.log_softmax(later, dim=-1).gather(2, targets.repeat(rows, 1).to(device)[..., None])[..., 0]
        scores += (picked * present.repeat(rows, 1).to(device)).sum(-1).view(rows, labels)
    return scores.tolist()


def choose_labels(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    continuations: dict[str, list[int]],
    batch_size: int = 32,
    progress: bool = False,
) -> list[str]:
    """For each prompt, the label whose continuation is the most likely (`label_logliks`)."""
    labels = list(continuations)
    scores = label_logliks(model, tokenizer, prompts, list(continuations.values()), batch_size, progress)
    return [labels[max(range(len(labels)), key=row.__getitem__)] for row in scores]
