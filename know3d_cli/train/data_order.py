"""Which dataset sample fills which slot of which optimiser step, for any number of processes.

The sample stream is a concatenation of epochs, each a permutation of the dataset drawn from (seed, epoch); step s
takes stream positions [s B, (s + 1) B) (B = `train.batch_size`), so the order is a function of (seed, step) alone:
resuming needs only the step, and 1 or W processes see the same samples. Within a step, slot j goes to micro-batch
j // (B / A) and, inside it, to process (j mod (B / A)) // (B / (A W)) (A = accumulation, W = processes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

logger = logging.getLogger(__name__)


def seed_sequence(*entropy: int) -> int:
    """A 63-bit seed derived from integers (NumPy's SeedSequence): independent streams per (seed, step, slot)."""
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class DataOrder:
    """Dataset index of every (step, slot).

    Args:
        size: number of samples in the dataset.
        seed: `train.seed`.
    """

    _ORDER_STREAM = 0x6F72  # keeps permutation seeds apart from the per-sample noise seeds

    def __init__(self, size: int, seed: int):
        if size < 1:
            raise ValueError("the dataset is empty")
        self.size = size
        self.seed = seed
        self._epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(seed_sequence(self._ORDER_STREAM, self.seed, epoch))
            self._perm = torch.randperm(self.size, generator=generator).tolist()
            self._epoch = epoch
        return self._perm

    def indices(self, step: int, batch_size: int) -> list[int]:
        """Dataset indices of the `batch_size` slots of optimiser step `step`."""
        out = []
        for position in range(step * batch_size, (step + 1) * batch_size):
            out.append(self._permutation(position // self.size)[position % self.size])
        return out

    def epoch(self, step: int, batch_size: int) -> float:
        return step * batch_size / self.size


def micro_batches(step_indices: list[int], accumulation: int, world_size: int,
                  rank: int) -> list[list[tuple[int, int]]]:
    """This process's `(dataset index, slot)` pairs for each micro-batch of one step."""
    batch = len(step_indices)
    per_micro = batch // accumulation
    per_rank = per_micro // world_size
    out = []
    for micro in range(accumulation):
        start = micro * per_micro + rank * per_rank
        out.append([(step_indices[slot], slot) for slot in range(start, start + per_rank)])
    return out


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields this process's micro-batches (lists of `(index, slot)`) for steps `start` .. `end - 1`, in order."""

    def __init__(self, order: DataOrder, batch_size: int, accumulation: int, world_size: int, rank: int,
                 start: int, end: int):
        self.order = order
        self.batch_size = batch_size
        self.accumulation = accumulation
        self.world_size = world_size
        self.rank = rank
        self.start = start
        self.end = end

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.end):
            indices = self.order.indices(step, self.batch_size)
            yield from micro_batches(indices, self.accumulation, self.world_size, self.rank)

    def __len__(self) -> int:
        return max(self.end - self.start, 0) * self.accumulation


__all__ = ["DataOrder", "StepBatchSampler", "micro_batches", "seed_sequence"]
