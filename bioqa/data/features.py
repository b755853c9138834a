"""The tokenised training and validation sets: in-memory Arrow datasets, built a chunk at a time.

`datasets.Dataset.from_list` holds every example's ids as Python lists (about 36 bytes an id), copies them into a
dict of columns, and then fingerprints the finished dataset by pickling all of it: for 160,000 short examples
that peaks near a gigabyte. Here each chunk of examples becomes int32 Arrow columns (4 bytes an id) as soon as it
is tokenised, and the fingerprint is a hash of those columns' bytes taken as they are built.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bioqa.data.prompts import PromptFormat, encode_examples
from bioqa.data.splits import Splits
from bioqa.errors import InputError, option

if TYPE_CHECKING:
    import pyarrow
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("bioqa")

# Examples turned into Arrow at a time: small enough that their Python lists are a few megabytes.
CHUNK = 4096


def _chunk_table(rows: list[dict[str, list[int]]], digest: Any) -> pyarrow.Table:
    """The rows as int32 list columns; their bytes go into `digest`."""
    import pyarrow as pa

    columns = {name: pa.array([row[name] for row in rows], type=pa.list_(pa.int32())) for name in rows[0]}
    for name, column in columns.items():
        digest.update(name.encode())
        for buffer in column.buffers():  # validity (absent: no nulls), offsets, then the child's ids
            if buffer is not None:
                digest.update(buffer)
    return pa.table(columns)


def features_dataset(rows: Iterable[dict[str, list[int]]]) -> Dataset | None:
    """A Dataset of the rows' integer-list columns (all rows have the same keys); None when there are no rows."""
    import pyarrow as pa
    from datasets import Dataset

    digest, tables, rows = hashlib.sha256(), [], iter(rows)
    while chunk := list(itertools.islice(rows, CHUNK)):
        tables.append(_chunk_table(chunk, digest))
    if not tables:
        return None
    # A fingerprint given here spares Dataset from pickling every row to compute one.
    return Dataset(pa.concat_tables(tables), fingerprint=digest.hexdigest()[:16])


def encode_splits(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    splits: Splits,
    max_seq_length: int,
    evaluating: bool,
    all_turns: bool = True,
) -> tuple[dict, dict]:
    """Tokenised train and validation sets (datasets.Dataset or None: no validation set when nothing evaluates),
    and their truncation counts. `all_turns`: train on a conversation's earlier answers too."""
    datasets, counts = {"validation": None}, {}
    for name in ("train", "validation") if evaluating else ("train",):
        counts[name] = {}
        rows = encode_examples(tokenizer, fmt, splits.examples[name], max_seq_length, counts[name], name, all_turns)
        datasets[name] = features_dataset(rows)
        log_truncation(name, counts[name], max_seq_length)
    if datasets["train"] is None:
        raise InputError(f"no training example fits {option('max_seq_length')} {max_seq_length}; raise it")
    return datasets, counts


def log_truncation(name: str, counts: dict[str, int], max_seq_length: int) -> None:
    if counts["truncated"] or counts["dropped"]:
        log.warning(
            "%s: %d examples had their context cut to fit %s %d; %d did not fit even without context and were dropped",
            name,
            counts["truncated"],
            option("max_seq_length"),
            max_seq_length,
            counts["dropped"],
        )
    if counts["shortened"]:
        log.warning(
            "%s: %d conversations lost their oldest exchanges (%d user turns and their answers in all) to fit %s %d",
            name,
            counts["shortened"],
            counts["dropped_exchanges"],
            option("max_seq_length"),
            max_seq_length,
        )
