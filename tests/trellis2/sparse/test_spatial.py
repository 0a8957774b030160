"""Channel-to-spatial upsampling and its mirror, spatial-to-channel downsampling, against hand-built cases."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.trellis2.sparse import (
    SparseTensor,
    channel_to_spatial,
    child_offsets,
    coarsen,
    neighbor_map,
    spatial_to_channel,
    subdivide,
)


def test_child_offsets_bit_order():
    assert child_offsets().tolist() == [
        [0, 0, 0],
        [1, 0, 0],
        [0, 1, 0],
        [1, 1, 0],
        [0, 0, 1],
        [1, 0, 1],
        [0, 1, 1],
        [1, 1, 1],
    ]


def test_one_voxel_partial_mask():
    feats = torch.arange(16, dtype=torch.float32).reshape(1, 16)  # 8 children x 2 channels
    x = SparseTensor(feats, torch.tensor([[0, 1, 2, 3]], dtype=torch.int32))
    mask = torch.tensor([[True, False, False, True, False, True, False, True]])
    y = channel_to_spatial(x, mask)
    assert y.coords.dtype == torch.int32
    assert y.coords.tolist() == [[0, 2, 4, 6], [0, 3, 5, 6], [0, 3, 4, 7], [0, 3, 5, 7]]
    assert y.feats.tolist() == [[0, 1], [6, 7], [10, 11], [14, 15]]


def test_one_voxel_full_mask_covers_the_2x2x2_block():
    x = SparseTensor(torch.randn(1, 24), torch.tensor([[0, 0, 0, 0]], dtype=torch.int32))
    y = channel_to_spatial(x, torch.ones(1, 8, dtype=torch.bool))
    assert y.coords[:, 1:].tolist() == child_offsets().tolist()
    assert torch.equal(y.feats, x.feats.reshape(8, 3))


def test_two_voxels_ordered_by_parent_then_child_with_a_fresh_cache():
    feats = torch.stack([torch.arange(8.0), 100 + torch.arange(8.0)])  # 1 channel per child
    coords = torch.tensor([[0, 5, 0, 1], [1, 0, 7, 0]], dtype=torch.int32)
    x = SparseTensor(feats, coords)
    assert neighbor_map(x).shape == (2, 27) and x.cache.neighbors is not None
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, [6, 1]] = True
    mask[1, [0, 4]] = True
    y = channel_to_spatial(x, mask)
    assert y.coords.tolist() == [[0, 11, 0, 2], [0, 10, 1, 3], [1, 0, 14, 0], [1, 0, 14, 1]]
    assert y.feats[:, 0].tolist() == [1, 6, 100, 104]
    assert y.cache is not x.cache and y.cache.neighbors is None and y.batch_size == 2 and y.lengths == [2, 2]


def test_plan_serves_several_feature_tensors_and_empty_masks():
    coords = torch.tensor([[0, 1, 1, 1], [0, 2, 2, 2]], dtype=torch.int32)
    mask = torch.tensor([[False] * 8, [True] + [False] * 7])
    plan = subdivide(coords, mask)
    assert plan.coords.tolist() == [[0, 4, 4, 4]]
    assert plan.gather(torch.arange(16.0).reshape(2, 8)).tolist() == [[8.0]]
    assert plan.gather(torch.arange(32.0).reshape(2, 16)).tolist() == [[16.0, 17.0]]
    none = subdivide(coords, torch.zeros(2, 8, dtype=torch.bool))
    assert none.coords.shape == (0, 4) and none.gather(torch.randn(2, 8)).shape == (0, 1)


def test_bad_shapes_raise():
    coords = torch.tensor([[0, 0, 0, 0]], dtype=torch.int32)
    with pytest.raises(ValueError, match="mask"):
        subdivide(coords, torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible by 8"):
        subdivide(coords, torch.ones(1, 8, dtype=torch.bool)).gather(torch.randn(1, 12))


# ------------------------------------------------------------------------------------ spatial-to-channel
def test_coarsen_hand_built_cell_and_zero_filled_children():
    # two children of parent (0, 1, 2, 3) and one child of parent (1, 0, 0, 0), given out of order
    coords = torch.tensor([[1, 1, 0, 0], [0, 3, 5, 6], [0, 2, 4, 7]], dtype=torch.int32)
    feats = torch.tensor([[7.0, 70.0], [1.0, 10.0], [4.0, 40.0]])
    y = spatial_to_channel(SparseTensor(feats, coords))
    assert y.coords.dtype == torch.int32
    assert y.coords.tolist() == [[0, 1, 2, 3], [1, 0, 0, 0]]  # lexicographic parents
    expected = torch.zeros(2, 16)
    expected[0, 2 * 3: 2 * 3 + 2] = torch.tensor([1.0, 10.0])  # (3, 5, 6) is child 1 + 2 = 3 of (1, 2, 3)
    expected[0, 2 * 4: 2 * 4 + 2] = torch.tensor([4.0, 40.0])  # (2, 4, 7) is child 4
    expected[1, 2 * 1: 2 * 1 + 2] = torch.tensor([7.0, 70.0])  # (1, 0, 0) is child 1 of (0, 0, 0)
    assert torch.equal(y.feats, expected)
    assert y.batch_size == 2 and y.lengths == [1, 1]


def test_coarsen_inverts_subdivide_and_gather():
    gen = torch.Generator().manual_seed(0)
    parts = []
    for b in range(3):
        xyz = (torch.rand(9, 7, 8, generator=gen) < 0.3).nonzero()
        parts.append(torch.cat([torch.full((len(xyz), 1), b), xyz], 1))
    fine = torch.cat(parts).to(torch.int32)
    plan = coarsen(fine)
    keys = plan.coords[:, 0] * 10**6 + plan.coords[:, 1] * 10**4 + plan.coords[:, 2] * 100 + plan.coords[:, 3]
    assert (keys[1:] > keys[:-1]).all()  # unique, lexicographic (so batch items are contiguous and ascending)
    mask = torch.zeros(len(plan.coords) * 8, dtype=torch.bool)
    mask[plan.target] = True
    back = subdivide(plan.coords, mask.reshape(-1, 8))
    assert sorted(map(tuple, back.coords.tolist())) == sorted(map(tuple, fine.tolist()))
    feats = torch.randn(len(fine), 5, generator=gen)
    merged = plan.scatter(feats)  # (M, 40)
    restored = back.gather(merged)  # children in subdivide's order
    order = {tuple(c): i for i, c in enumerate(fine.tolist())}
    rows = torch.tensor([order[tuple(c)] for c in back.coords.tolist()])
    assert torch.equal(restored, feats[rows])


def test_coarsen_empty_and_bad_rows():
    plan = coarsen(torch.zeros(0, 4, dtype=torch.int32))
    assert plan.coords.shape == (0, 4) and plan.scatter(torch.zeros(0, 3)).shape == (0, 24)
    with pytest.raises(ValueError, match="3 feature rows"):
        coarsen(torch.tensor([[0, 0, 0, 0]], dtype=torch.int32)).scatter(torch.zeros(3, 2))
