"""Neighbour maps: slot convention, batch separation, large coordinates and caching."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.trellis2.sparse import SparseTensor, build_neighbor_map, kernel_offsets, neighbor_map
from know3d_cli.trellis2.sparse import neighbors as neighbors_module


def brute_force(coords: torch.Tensor) -> torch.Tensor:
    rows = {tuple(c): i for i, c in enumerate(coords.tolist())}
    out = torch.full((len(rows), 27), -1, dtype=torch.int64)
    for i, (b, x, y, z) in enumerate(coords.tolist()):
        for k, (dx, dy, dz) in enumerate(kernel_offsets().tolist()):
            out[i, k] = rows.get((b, x + dx, y + dy, z + dz), -1)
    return out


def test_kernel_slot_convention():
    offsets = kernel_offsets()
    assert offsets.shape == (27, 3)
    for i in range(3):
        for j in range(3):
            for k in range(3):
                assert offsets[i * 9 + j * 3 + k].tolist() == [i - 1, j - 1, k - 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_shuffled_batches(seed):
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for b in range(3):
        xyz = (torch.rand(7, 6, 5, generator=gen) < 0.35).nonzero()
        parts.append(torch.cat([torch.full((len(xyz), 1), b), xyz], 1))
    coords = torch.cat(parts)
    coords = coords[torch.randperm(len(coords), generator=gen)].to(torch.int32)  # any row order is allowed
    nbr = build_neighbor_map(coords)
    assert nbr.dtype == torch.int64 and nbr.shape == (len(coords), 27)
    assert torch.equal(nbr, brute_force(coords))
    # Opposite slots are the same relation read backwards.
    hit = nbr >= 0
    rows, k = hit.nonzero(as_tuple=True)
    assert torch.equal(nbr[nbr[rows, k], 26 - k], rows)


def test_large_coordinates_and_no_aliasing_across_rows_or_batches():
    # Voxels at both ends of a 1538-wide grid; a key without margins would alias (y, z=max) with (y+1, z=-1),
    # and the last voxel of batch 0 with the first of batch 1.
    m = 1537
    coords = torch.tensor(
        [
            [0, 0, 0, 0],
            [0, 0, 0, 1],
            [0, 0, 1, 0],
            [0, 0, 0, m],
            [0, m, m, m],
            [0, m - 1, m, m],
            [0, m, m - 1, m - 1],
            [0, 1535, 1535, 1535],
            [0, 1536, 1535, 1534],
            [1, 0, 0, 0],
            [1, m, m, m],
            [2, 0, 0, 0],
        ],
        dtype=torch.int32,
    )
    assert torch.equal(build_neighbor_map(coords), brute_force(coords))


def test_empty_and_single_voxel():
    assert build_neighbor_map(torch.zeros(0, 4, dtype=torch.int32)).shape == (0, 27)
    single = build_neighbor_map(torch.tensor([[0, 5, 5, 5]], dtype=torch.int32))
    assert single[0, 13] == 0 and (single[0, torch.arange(27) != 13] == -1).all()


def test_cached_per_coordinate_set(monkeypatch):
    calls = []
    real = neighbors_module.build_neighbor_map

    def counting(coords):
        calls.append(len(coords))
        return real(coords)

    monkeypatch.setattr(neighbors_module, "build_neighbor_map", counting)
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 3, 3, 3]], dtype=torch.int32)
    x = SparseTensor(torch.randn(3, 2), coords)
    first = neighbor_map(x)
    again = neighbor_map(x.replace(torch.randn(3, 5)))  # same coords and cache: no rebuild
    assert first is again and calls == [3]
    other = SparseTensor(torch.randn(3, 2), coords * 2)  # a different coordinate set has its own cache
    assert neighbor_map(other)[0, 22] == -1 and calls == [3, 3]
    assert first[0, 22] == 1  # slot 22 = offset (+1, 0, 0)
