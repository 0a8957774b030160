"""`SparseTensor`: batch layout, and its typed cache bound to one coordinate set."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.trellis2.sparse import SparseTensor, neighbor_map
from know3d_cli.trellis2.sparse.coordinate_cache import CoordinateCache, RopeKey


def _coords() -> torch.Tensor:
    return torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 2, 2, 2], [1, 2, 2, 3], [1, 5, 5, 5]], dtype=torch.int32)


def test_batch_layout_has_honest_names():
    x = SparseTensor(torch.randn(5, 7), _coords())
    assert (len(x), x.num_channels, x.batch_size) == (5, 7, 2)
    assert x.lengths == [2, 3] and x.row_slices == [slice(0, 2), slice(2, 5)]
    assert x.batch_index.tolist() == [0, 0, 1, 1, 1]
    assert not hasattr(x, "shape")  # (batch, channels) was not a shape


def test_replace_shares_the_cache_of_the_same_coordinates():
    x = SparseTensor(torch.randn(5, 2), _coords())
    first = neighbor_map(x)
    y = x.replace(torch.randn(5, 9))
    assert y.cache is x.cache and neighbor_map(y) is first
    assert x.to(dtype=torch.float64).cache is x.cache  # same device: same coordinates, same cache
    key = RopeKey(16, (1.0, 10000.0))
    x.cache.rope_phases[key] = torch.ones(5, 8, dtype=torch.complex64)
    assert key in y.cache.rope_phases


def test_a_cache_is_never_reused_for_other_coordinates_even_with_the_same_row_count():
    coords = _coords()
    x = SparseTensor(torch.randn(5, 2), coords)
    neighbor_map(x)
    shifted = coords.clone()
    shifted[:, 1:] += 3  # same number of rows, other voxels
    with pytest.raises(ValueError, match="another coordinate tensor"):
        SparseTensor(torch.randn(5, 2), shifted, x.cache)
    assert SparseTensor(torch.randn(5, 2), shifted).cache is not x.cache
    assert CoordinateCache(coords).serves(coords) and not CoordinateCache(coords).serves(shifted)
