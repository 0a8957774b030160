"""Sample order: seeded epochs, a function of (seed, step) only, split identically over any number of processes."""

from __future__ import annotations

import pytest

from know3d_cli.train.data_order import DataOrder, StepBatchSampler, micro_batches


def test_every_epoch_is_a_permutation_and_epochs_differ():
    order = DataOrder(10, seed=3)
    stream = [i for step in range(10) for i in order.indices(step, 4)]  # 40 positions = 4 epochs
    epochs = [stream[k * 10:(k + 1) * 10] for k in range(4)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 4
    assert DataOrder(10, seed=3).indices(7, 4) == order.indices(7, 4)  # no hidden state
    assert DataOrder(10, seed=4).indices(0, 10) != order.indices(0, 10)


@pytest.mark.parametrize("accumulation,world", [(1, 2), (2, 2), (4, 1), (1, 4)])
def test_processes_and_micro_batches_partition_each_step(accumulation, world):
    order = DataOrder(7, seed=0)
    indices = order.indices(3, 8)
    pieces = [pair for rank in range(world) for micro in micro_batches(indices, accumulation, world, rank)
              for pair in micro]
    assert sorted(slot for _, slot in pieces) == list(range(8))
    assert all(indices[slot] == index for index, slot in pieces)


def test_the_sampler_resumes_at_any_step():
    order = DataOrder(5, seed=1)
    full = list(StepBatchSampler(order, 4, 2, 2, 1, 0, 6))
    tail = list(StepBatchSampler(order, 4, 2, 2, 1, 3, 6))
    assert len(full) == 12 and full[6:] == tail
