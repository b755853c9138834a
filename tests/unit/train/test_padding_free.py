"""Padding-free batches: the examples end to end in one row, each attending only to itself."""

import pytest
import torch

from bioqa.data import prompts
from bioqa.train.loss import AnswerOnlyCollator, answer_only_loss
from helpers import prompt_args
from tiny_models import build_model, qa_rows


@pytest.fixture(scope="module")
def features(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    encoded, _ = prompts.encode_dataset(tokenizer, fmt, qa_rows(4, seed=2), 256)
    assert len({len(f["input_ids"]) for f in encoded}) > 1  # lengths differ: the padded batch pads
    return encoded


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(tokenizer, request):
    return build_model(tokenizer, seed=4, attn_implementation=request.param).eval()


def full_logits(model, batch):
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids", "use_cache")}
    with torch.no_grad():
        return model(**inputs).logits


def segments(features):
    """(start, end) of each example in the padding-free row."""
    starts = [0]
    for feature in features:
        starts.append(starts[-1] + len(feature["input_ids"]))
    return list(zip(starts, starts[1:]))


def test_the_row_holds_every_token_once_with_restarting_positions(tokenizer, features):
    batch = AnswerOnlyCollator(tokenizer, padding_free=True)(features)
    assert batch["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in features)) and "attention_mask" not in batch
    assert batch["use_cache"] is False  # with a cache, transformers would not read the examples' bounds
    for start, end in segments(features):
        assert batch["position_ids"][0, start:end].tolist() == list(range(end - start))
        assert batch["labels"][0, start] == -100  # no example is trained to predict the next one's first token


def test_each_example_gets_the_logits_and_loss_of_a_padded_batch(tokenizer, features, model):
    padded = AnswerOnlyCollator(tokenizer)(features)
    packed = AnswerOnlyCollator(tokenizer, padding_free=True)(features)
    padded_logits, packed_logits = full_logits(model, padded), full_logits(model, packed)
    for row, (start, end) in enumerate(segments(features)):
        torch.testing.assert_close(packed_logits[0, start:end], padded_logits[row, : end - start], atol=1e-4, rtol=1e-4)
    losses = {}
    for name, batch in (("padded", padded), ("packed", packed)):
        with torch.no_grad():
            outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
        losses[name] = answer_only_loss(outputs, batch["labels"]).item()
    assert losses["packed"] == pytest.approx(losses["padded"], rel=1e-5)


def test_changing_one_example_leaves_the_others_logits_unchanged(tokenizer, features, model):
    changed = [dict(f) for f in features]
    changed[1]["input_ids"] = [(t * 7 + 3) % 100 + 5 for t in changed[1]["input_ids"]]
    collate = AnswerOnlyCollator(tokenizer, padding_free=True)
    before, after = full_logits(model, collate(features)), full_logits(model, collate(changed))
    spans = segments(features)
    assert not torch.allclose(before[0, slice(*spans[1])], after[0, slice(*spans[1])])
    for index, (start, end) in enumerate(spans):
        if index != 1:
            torch.testing.assert_close(after[0, start:end], before[0, start:end], atol=1e-5, rtol=1e-5)
