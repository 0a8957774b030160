"""Sorting, grouping and lookups of int64 voxel keys, the only "hash map" the CPU O-Voxel needs.

numpy's default sort is SIMD-accelerated and several times faster than an argsort, so a key and its position are
packed into one int64 (key in the high bits, index in the low bits) and sorted as plain numbers. Lookups sort their
queries first: a binary search over sorted needles walks the table in order instead of jumping around it. Sums
over sorted rows go through torch's index_add, which is several times faster than numpy's reduceat.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def sort_with_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) non-negative int64 keys -> (sorted keys, int64 position of each in `keys`); equal keys in any order."""
    n = keys.shape[0]
    if n == 0:
        return keys.astype(np.int64), np.zeros(0, dtype=np.int64)
    index_bits = max(1, int(n - 1).bit_length())
    if int(keys.max()).bit_length() + index_bits > 63:
        order = np.argsort(keys)
        return keys[order], order
    packed = keys.astype(np.int64) << index_bits
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    sorted_keys = packed >> index_bits
    packed &= (1 << index_bits) - 1  # reuse the buffer for the positions
    return sorted_keys, packed


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """(G,) int64 first position of each run of equal keys in a sorted array."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))


def lookup(table: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find queries in a sorted table of unique keys.

    Returns:
        order: (n,) positions in `queries`, sorted by query key; rows: (n,) table row of each (in that order);
        found: (n,) bool, whether that query is in the table (its row is meaningless otherwise).
    """
    sorted_queries, order = sort_with_index(queries)
    if table.shape[0] == 0:
        return order, np.zeros_like(order), np.zeros(order.shape[0], dtype=bool)
    rows = np.minimum(np.searchsorted(table, sorted_queries), table.shape[0] - 1)
    return order, rows, table[rows] == sorted_queries


def add_by_group(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """target[rows] += values, for rows sorted ascending (repeats allowed): summed per run, then added once."""
    if rows.shape[0] == 0:
        return
    new = np.empty(rows.shape[0], dtype=bool)
    new[0] = True
    np.not_equal(rows[1:], rows[:-1], out=new[1:])
    group = np.cumsum(new) - 1
    sums = torch.zeros((int(group[-1]) + 1,) + values.shape[1:], dtype=torch.from_numpy(values[:0]).dtype)
    sums.index_add_(0, torch.from_numpy(group), torch.from_numpy(np.ascontiguousarray(values)))
    target[rows[new]] += sums.numpy()


def group_chunks(rows: np.ndarray, size: int) -> Iterator[slice]:
    """Slices of about `size` entries of a non-decreasing row array, never splitting a row's run."""
    start, n = 0, rows.shape[0]
    while start < n:
        stop = min(start + size, n)
        if stop < n:
            stop = int(np.searchsorted(rows, rows[stop], side="left"))
            if stop <= start:
                stop = int(np.searchsorted(rows, rows[start], side="right"))
        yield slice(start, stop)
        start = stop


__all__ = ["add_by_group", "group_chunks", "group_starts", "lookup", "sort_with_index"]
