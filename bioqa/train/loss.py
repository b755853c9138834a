"""Loss on answer tokens only, and logits only where they are needed.

`AnswerOnlyCollator` pads a batch and adds the positions whose next token is labelled as
`logits_to_keep`, so the model projects just those hidden states onto the vocabulary, and
`answer_only_loss` scores them. On long-context QA (a PubMedQA abstract, a short answer) most
positions are prompt, and the (batch x length x vocabulary) logits were the largest tensors of a
step: this made a CPU LoRA step about 1.6x faster. The loss is the model's own (tested equal),
normalised by the Trainer's token count as usual. A right-padded batch goes without its attention mask:
causal attention keeps every example's tokens from the padding after them anyway, and sdpa then runs its
causal kernel instead of a dense mask (1.1-1.2x a CPU step). Flash-attention keeps the mask
(`keep_attention_mask`): with it, it skips the padding.

With `padding_free`, a batch is its examples end to end in one row (transformers'
DataCollatorWithFlattening): position ids restart at each example and no attention mask is sent, so
flash-attention's variable-length kernels keep each example to itself without a padded position, and
sdpa / eager attention get a block-diagonal mask that transformers builds from the position ids. The
loss is unchanged (tested); on a CPU the dense mask costs more than the padding it saves (docs/BENCHMARKS.md).

With `shift_labels`, the model computes the loss itself (no `compute_loss_func`): the batch keeps its labels and
gains `shift_labels`, the target of each kept position, which transformers' causal-LM loss and Liger's fused linear
cross-entropy (`--use_liger_kernel`, which never materialises the logits) both read in place of shifting the
labels. The same answer-only loss, in evaluations too, where the Trainer asks Liger to skip the logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bioqa import compat
from bioqa.data.prompts import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def answer_positions(labels: Any):
    """Sequence positions whose logits predict a labelled token in any row of the batch."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)


def only_right_padding(attention_mask: Any) -> bool:
    """Whether every row of the mask is its tokens, then nothing but padding."""
    if attention_mask is None:
        return False
    return bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def needs_attention_mask(model: Any) -> bool:
    """Flash-attention uses the mask to skip padded positions (varlen kernels), so it should always get one."""
    return (compat.attention_implementation(model.config) or "").startswith("flash")


def answer_only_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None):
    """Causal-LM cross-entropy over the kept logits (the model's loss, without the prompt's logits)."""
    import torch

    keep = answer_positions(labels)
    logits = outputs.logits.float()
    targets = labels[:, keep + 1].to(logits.device)
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum().clamp(min=1)
    return loss / count


class AnswerOnlyCollator:
    """Pads a batch (DataCollatorForSeq2Seq), or lays it end to end in one row (`padding_free`), and adds
    `logits_to_keep` for `answer_only_loss` (with `shift_labels`, their targets for a model computing its loss)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        pad_to_multiple_of: int | None = None,
        padding_free: bool = False,
        keep_attention_mask: bool = False,
        shift_labels: bool = False,
    ):
        from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

        self.keep_attention_mask, self.shift_labels = keep_attention_mask, shift_labels
        if padding_free:  # the first label of each example is IGNORE_INDEX: no example predicts the next one
            self.pad = DataCollatorWithFlattening(separator_id=IGNORE_INDEX)
        else:
            self.pad = DataCollatorForSeq2Seq(
                tokenizer, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=pad_to_multiple_of
            )

    def __call__(self, features: list[dict]) -> dict:
        batch = self.pad(features)
        batch["logits_to_keep"] = answer_positions(batch["labels"])
        if self.shift_labels:  # for a model computing its own loss: the target of each kept position
            batch["shift_labels"] = batch["labels"][:, batch["logits_to_keep"] + 1]
        if not self.keep_attention_mask and only_right_padding(batch.get("attention_mask")):
            # Causal attention never looks right, so padding after an example changes none of its logits: without
            # the mask sdpa runs causal and skips the blocks above the diagonal, instead of applying a dense mask.
            del batch["attention_mask"]
        # No KV cache while training: it would hold every layer's keys and values for nothing, and with a cache
        # transformers no longer reads packed examples from the position ids, so they would attend to each other.
        batch["use_cache"] = False
        return batch
