"""Batches of examples of similar length, in a random order, for any dataset size."""

from __future__ import annotations

import random


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
            jitter = {i: self.lengths[i] * rng.uniform(0.97, 1.03) for i in order[start : start + size]}
            mega = sorted(jitter, key=jitter.__getitem__, reverse=True)
            batches += [mega[i : i + self.batch_size] for i in range(0, len(mega), self.batch_size)]
        longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
        first = batches.pop(longest)
        rng.shuffle(batches)
        return iter([i for batch in [first, *batches] for i in batch])
