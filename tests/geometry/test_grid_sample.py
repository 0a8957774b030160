"""Sparse voxel lookup and trilinear/nearest sampling against dense references and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from know3d_cli.geometry import VoxelIndex, grid_sample_3d


def dense_volume(resolution: int, channels: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every voxel of an R^3 grid, rows shuffled: coords (M, 3), attrs (M, C), dense (C, R, R, R) as [c, x, y, z]."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(channels, resolution, resolution, resolution, generator=gen, dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
    perm = torch.randperm(coords.shape[0], generator=gen)
    coords = coords[perm]
    attrs = dense[:, coords[:, 0], coords[:, 1], coords[:, 2]].T
    return coords.to(torch.int32), attrs, dense


def torch_reference(dense: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear sampling with F.grid_sample (align_corners=False: voxel i's centre at i + 0.5; border padding)."""
    resolution = dense.shape[-1]
    grid = (points / resolution * 2.0 - 1.0)[:, [2, 1, 0]]  # grid_sample wants (W, H, D) = (z, y, x) order
    out = F.grid_sample(
        dense[None], grid[None, :, None, None, :], mode="bilinear", padding_mode="border", align_corners=False
    )  # (1, C, P, 1, 1)
    return out[0, :, :, 0, 0].T


def test_trilinear_matches_dense_grid_sample():
    """With every voxel present, renormalising over out-of-grid neighbours equals border padding."""
    resolution = 6
    coords, attrs, dense = dense_volume(resolution, channels=4)
    points = torch.rand(500, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * resolution
    values = grid_sample_3d(coords, attrs, resolution, points)
    assert values.dtype == torch.float64 and values.shape == (500, 4)
    torch.testing.assert_close(values, torch_reference(dense, points), rtol=1e-10, atol=1e-10)


def test_trilinear_at_voxel_centres_returns_voxel_values():
    resolution = 5
    coords, attrs, _ = dense_volume(resolution, channels=3)
    values = grid_sample_3d(coords, attrs.float(), resolution, coords.float() + 0.5)
    assert values.dtype == torch.float32
    torch.testing.assert_close(values, attrs.float())


def test_missing_voxels_are_renormalised_away():
    coords = torch.tensor([[0, 0, 0], [1, 0, 0]])
    attrs = torch.tensor([[0.0], [1.0]])
    points = torch.tensor(
        [
            [1.25, 0.5, 0.5],  # between the two centres: weights 0.25 / 0.75
            [1.25, 0.7, 0.5],  # 20% of the weight falls on absent y = 1 voxels: renormalised away
            [1.25, 0.7, 0.9],
            [0.2, 0.5, 0.5],  # only voxel 0 around
            [4.0, 4.0, 4.0],  # nothing around: 0
        ]
    )
    values = grid_sample_3d(coords, attrs, 8, points)
    torch.testing.assert_close(values[:, 0], torch.tensor([0.75, 0.75, 0.75, 0.0, 0.0]))


def test_renormalisation_matches_a_hand_formula():
    """A random sparse volume against the spec's formula written out per neighbour."""
    resolution = 5
    gen = torch.Generator().manual_seed(2)
    present = torch.rand(resolution, resolution, resolution, generator=gen) < 0.6
    coords = present.nonzero()
    attrs = torch.rand(coords.shape[0], 2, generator=gen, dtype=torch.float64)
    rows = {tuple(c): n for n, c in enumerate(coords.tolist())}
    points = torch.rand(200, 3, generator=gen, dtype=torch.float64) * resolution
    values = grid_sample_3d(coords, attrs, resolution, points)
    for q, value in zip(points.tolist(), values):
        total, weight = torch.zeros(2, dtype=torch.float64), 0.0
        base = [math.floor(c - 0.5) for c in q]
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    n = (base[0] + dx, base[1] + dy, base[2] + dz)
                    if n in rows:
                        w = 1.0
                        for axis in range(3):
                            w *= 1.0 - abs(n[axis] + 0.5 - q[axis])
                        total += w * attrs[rows[n]]
                        weight += w
        torch.testing.assert_close(value, total / max(weight, 1e-12), rtol=1e-9, atol=1e-12)


def test_nearest_takes_the_containing_voxel():
    coords = torch.tensor([[0, 0, 0], [1, 2, 3]])
    attrs = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    points = torch.tensor([[0.99, 0.01, 0.5], [1.0, 2.999, 3.2], [1.0, 1.999, 3.2], [-0.5, 0.5, 0.5]])
    values = grid_sample_3d(coords, attrs, 4, points, mode="nearest")
    torch.testing.assert_close(values, torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]]))


@pytest.mark.parametrize("mode", ["trilinear", "nearest"])
def test_chunk_size_does_not_change_the_result(mode):
    resolution = 6
    coords, attrs, _ = dense_volume(resolution, channels=3)
    keep = torch.rand(coords.shape[0], generator=torch.Generator().manual_seed(3)) < 0.5
    points = torch.rand(257, 3, generator=torch.Generator().manual_seed(4)) * resolution
    full = grid_sample_3d(coords[keep], attrs[keep], resolution, points, mode=mode)
    chunked = grid_sample_3d(coords[keep], attrs[keep], resolution, points, mode=mode, chunk_size=10)
    assert torch.equal(full, chunked)


def test_prebuilt_index_gives_the_same_result():
    resolution = 4
    coords, attrs, _ = dense_volume(resolution, channels=2)
    points = torch.rand(50, 3, generator=torch.Generator().manual_seed(5)) * resolution
    index = VoxelIndex(coords, resolution)
    reused = grid_sample_3d(coords, attrs, resolution, points, index=index)
    assert torch.equal(reused, grid_sample_3d(coords, attrs, resolution, points))


def test_voxel_index_lookup():
    resolution = 4
    coords = torch.tensor([[3, 0, 1], [0, 1, 0], [2, 2, 2], [0, 0, 3], [2, 3, 1]], dtype=torch.int32)
    index = VoxelIndex(coords, resolution)
    assert index.lookup(coords).tolist() == [0, 1, 2, 3, 4]
    queries = torch.tensor(
        [
            [2, 2, 2],
            [1, 1, 1],  # inside the grid, absent
            [0, 0, 4],  # out of the grid; (x*R + y)*R + z would alias it with (0, 1, 0)
            [3, 0, -3],  # ... and this one with (2, 3, 1)
            [-1, 2, 2],
            [4, 0, 0],
        ]
    )
    assert index.lookup(queries).tolist() == [2, -1, -1, -1, -1, -1]
    assert index.lookup(queries.reshape(2, 3, 3)).shape == (2, 3)


def test_empty_index_finds_nothing():
    index = VoxelIndex(torch.zeros(0, 3, dtype=torch.int64), 8)
    assert index.lookup(torch.tensor([[0, 0, 0], [9, 9, 9]])).tolist() == [-1, -1]
    values = grid_sample_3d(torch.zeros(0, 3, dtype=torch.int64), torch.zeros(0, 2), 8, torch.rand(3, 3) * 8)
    assert torch.equal(values, torch.zeros(3, 2))


def test_rejects_bad_arguments():
    coords = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="coords"):
        VoxelIndex(torch.zeros(2, 4, dtype=torch.int64), 8)
    with pytest.raises(ValueError, match="mode"):
        grid_sample_3d(coords, torch.zeros(2, 1), 8, torch.zeros(1, 3), mode="cubic")
    with pytest.raises(ValueError, match="attrs"):
        grid_sample_3d(coords, torch.zeros(3, 1), 8, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="points"):
        grid_sample_3d(coords, torch.zeros(2, 1), 8, torch.zeros(1, 2))
