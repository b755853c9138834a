"""The tokenised training sets: built in chunks of int32 Arrow columns, holding exactly what the encoder gave."""

import pytest

from bioqa.data import features, prompts
from bioqa.data.splits import Splits
from bioqa.errors import InputError
from helpers import prompt_args
from tiny_models import qa_rows


def rows(count: int, offset: int = 0) -> list[dict[str, list[int]]]:
    # ids past 2**16 and the -100 of masked labels: int32 must hold both
    return [
        {"input_ids": [offset + i, 70_000 + i, i * 3], "attention_mask": [1, 1, 1], "labels": [-100, 70_000 + i, i * 3]}
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [1, 3, 7])  # less than, exactly and past a chunk of 3
def test_the_dataset_holds_every_row_across_chunk_boundaries(monkeypatch, count):
    monkeypatch.setattr(features, "CHUNK", 3)
    given = rows(count)
    dataset = features.features_dataset(iter(given))
    assert dataset.to_list() == given
    assert {str(dataset.features[name].feature) for name in dataset.column_names} == {"Value('int32')"}


def test_no_rows_give_no_dataset():
    assert features.features_dataset(iter([])) is None


def test_the_fingerprint_follows_the_content(monkeypatch):
    monkeypatch.setattr(features, "CHUNK", 2)
    first = features.features_dataset(rows(5))._fingerprint
    assert features.features_dataset(rows(5))._fingerprint == first
    assert features.features_dataset(rows(5, offset=1))._fingerprint != first
    assert features.features_dataset(rows(4))._fingerprint != first


def test_encode_splits_matches_the_encoder_and_counts_what_it_dropped(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    train = qa_rows(6, seed=5)
    long = {**train[0], "id": "long", "answer": "word " * 300}
    splits = Splits(examples={"train": [*train, long], "validation": qa_rows(2, seed=6), "test": []})
    expected, counts = prompts.encode_dataset(tokenizer, fmt, train, 256)
    datasets, found = features.encode_splits(tokenizer, fmt, splits, 256, evaluating=False)
    assert datasets["train"].to_list() == expected
    assert datasets["validation"] is None  # nothing evaluates: the validation split is not even tokenised
    none = {"shortened": 0, "dropped_exchanges": 0}  # no conversations here
    assert found == {"train": {"truncated": 0, "dropped": 1, **none}} and counts == {
        "truncated": 0,
        "dropped": 0,
        **none,
    }
    datasets, found = features.encode_splits(tokenizer, fmt, splits, 256, evaluating=True)
    assert len(datasets["validation"]) == 2 and found["validation"] == {"truncated": 0, "dropped": 0, **none}


def test_no_example_that_fits_is_an_input_error(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    splits = Splits(examples={"train": [{**qa_rows(1)[0], "answer": "word " * 300}], "validation": [], "test": []})
    with pytest.raises(InputError, match="no training example fits max_seq_length 64; raise it"):
        features.encode_splits(tokenizer, fmt, splits, 64, evaluating=False)
