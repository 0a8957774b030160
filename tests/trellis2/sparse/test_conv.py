"""Submanifold conv (torch reference and the SubMConv3d layer) against a dense F.conv3d oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from know3d_cli.trellis2.sparse import (
    ConvBackend,
    SparseTensor,
    SubMConv3d,
    build_neighbor_map,
    resolve_conv_backend,
    set_conv_backend,
    submanifold_conv3d,
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")],
    ),
]


@pytest.fixture(autouse=True)
def no_tf32():
    """Full fp32 matmuls for the oracle comparison (TF32 only exists on GPUs, but keep the reference exact)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def random_coords(gen: torch.Generator, batch: int, side: int, density: float) -> torch.Tensor:
    """(N, 4) int32 unique voxels, batch items contiguous and ascending, rows shuffled inside each item."""
    parts = []
    for b in range(batch):
        xyz = (torch.rand(side, side, side, generator=gen) < density).nonzero()
        xyz = xyz[torch.randperm(xyz.shape[0], generator=gen)]
        parts.append(torch.cat([torch.full((xyz.shape[0], 1), b), xyz], dim=1))
    return torch.cat(parts).to(torch.int32)


def dense_conv(feats, coords, weight, bias):
    """Scatter into a dense grid, F.conv3d(padding=1) with the dense-layout weight, gather at the voxels."""
    c = coords.long()
    batch = int(c[:, 0].max()) + 1
    size = (c[:, 1:].amax(0) + 1).tolist()
    grid = feats.new_zeros(batch, feats.shape[1], *size)
    grid[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = feats
    w_dense = weight.permute(0, 4, 1, 2, 3)  # (Co, 3, 3, 3, Ci) -> (Co, Ci, 3, 3, 3)
    out = F.conv3d(grid, w_dense, bias, padding=1)
    return out[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algorithm", ["offset", "gemm"])
@pytest.mark.parametrize("batch,side,density", [(1, 6, 0.5), (3, 9, 0.25), (2, 12, 0.05)])
def test_matches_dense_conv3d(device, algorithm, batch, side, density):
    gen = torch.Generator().manual_seed(batch * 100 + side)
    coords = random_coords(gen, batch, side, density)
    ci, co = 6, 5
    feats = torch.randn(coords.shape[0], ci, generator=gen)
    weight = torch.randn(co, 3, 3, 3, ci, generator=gen)
    bias = torch.randn(co, generator=gen)
    expected = dense_conv(feats, coords, weight, bias)

    coords, feats, weight, bias = (t.to(device) for t in (coords, feats, weight, bias))
    out = submanifold_conv3d(feats, build_neighbor_map(coords), weight, bias, algorithm=algorithm)
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["offset", "gemm"])
def test_isolated_voxels_see_only_the_centre_tap(algorithm):
    gen = torch.Generator().manual_seed(1)
    xyz = torch.tensor([[0, 0, 0], [2, 0, 0], [0, 2, 4], [6, 6, 6]])
    coords = torch.cat([torch.tensor([[0], [0], [1], [1]]), xyz], dim=1).to(torch.int32)
    feats = torch.randn(4, 3, generator=gen)
    weight = torch.randn(4, 3, 3, 3, 3, generator=gen)
    bias = torch.randn(4, generator=gen)
    nbr = build_neighbor_map(coords)
    assert (nbr >= 0).sum().item() == 4  # only the centres
    out = submanifold_conv3d(feats, nbr, weight, bias, algorithm=algorithm)
    torch.testing.assert_close(out, feats @ weight[:, 1, 1, 1, :].t() + bias, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out, dense_conv(feats, coords, weight, bias), rtol=1e-5, atol=1e-5)


def test_batch_items_do_not_see_each_other():
    # Same voxel positions in two batch items: each item's result must equal convolving it alone.
    gen = torch.Generator().manual_seed(2)
    xyz = random_coords(gen, 1, 5, 0.5)[:, 1:]
    coords = torch.cat([torch.cat([torch.full((len(xyz), 1), b), xyz], 1) for b in (0, 1)]).to(torch.int32)
    feats = torch.randn(len(coords), 4, generator=gen)
    weight = torch.randn(3, 3, 3, 3, 4, generator=gen)
    out = submanifold_conv3d(feats, build_neighbor_map(coords), weight, None)
    n = len(xyz)
    for b in (0, 1):
        rows = slice(b * n, (b + 1) * n)
        alone = submanifold_conv3d(feats[rows], build_neighbor_map(coords[rows]), weight, None)
        torch.testing.assert_close(out[rows], alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("algorithm", ["offset", "gemm"])
def test_chunking_gives_the_same_result(algorithm):
    # float64, so the only differences left are BLAS kernels summing in another order for another row count.
    gen = torch.Generator().manual_seed(3)
    coords = random_coords(gen, 2, 10, 0.3)
    feats = torch.randn(len(coords), 8, dtype=torch.float64, generator=gen)
    weight = torch.randn(8, 3, 3, 3, 8, dtype=torch.float64, generator=gen)
    bias = torch.randn(8, dtype=torch.float64, generator=gen)
    nbr = build_neighbor_map(coords)
    whole = submanifold_conv3d(feats, nbr, weight, bias, algorithm=algorithm)
    for chunk in (1, 17, len(coords) - 1):
        part = submanifold_conv3d(feats, nbr, weight, bias, chunk_size=chunk, algorithm=algorithm)
        torch.testing.assert_close(part, whole, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["offset", "gemm"])
def test_gradients_match_the_dense_oracle(algorithm):
    gen = torch.Generator().manual_seed(6)
    coords = random_coords(gen, 2, 6, 0.4)
    feats = torch.randn(len(coords), 3, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    out = submanifold_conv3d(feats, build_neighbor_map(coords), weight, bias, chunk_size=13, algorithm=algorithm)
    grads = torch.autograd.grad(out.square().sum(), (feats, weight, bias))
    ref = torch.autograd.grad(dense_conv(feats, coords, weight, bias).square().sum(), (feats, weight, bias))
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def test_algorithms_agree_and_unknown_is_rejected():
    gen = torch.Generator().manual_seed(4)
    coords = random_coords(gen, 1, 8, 0.4)
    feats = torch.randn(len(coords), 5, dtype=torch.float64, generator=gen)
    weight = torch.randn(7, 3, 3, 3, 5, dtype=torch.float64, generator=gen)
    nbr = build_neighbor_map(coords)
    a = submanifold_conv3d(feats, nbr, weight, None, algorithm="offset")
    b = submanifold_conv3d(feats, nbr, weight, None, algorithm="gemm")
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="algorithm"):
        submanifold_conv3d(feats, nbr, weight, None, algorithm="winograd")


@pytest.mark.parametrize("device", DEVICES)
def test_layer_state_dict_and_forward(device):
    layer = SubMConv3d(4, 6).to(device)
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == {
        "weight": (6, 3, 3, 3, 4),
        "bias": (6,),
    }
    gen = torch.Generator().manual_seed(5)
    coords = random_coords(gen, 2, 7, 0.3)
    feats = torch.randn(len(coords), 4, generator=gen)
    x = SparseTensor(feats.to(device), coords.to(device))
    y = layer(x)
    assert torch.equal(y.coords, x.coords) and y.cache is x.cache
    expected = dense_conv(feats, coords, layer.weight.detach().cpu(), layer.bias.detach().cpu())
    torch.testing.assert_close(y.feats.detach().cpu(), expected, rtol=1e-5, atol=1e-5)


def test_layer_without_bias_and_on_meta_device():
    assert list(SubMConv3d(3, 2, bias=False).state_dict()) == ["weight"]
    with torch.device("meta"):
        big = SubMConv3d(1024, 4096)
    assert big.weight.shape == (4096, 3, 3, 3, 1024) and big.weight.is_meta


def test_backend_selection():
    assert resolve_conv_backend(ConvBackend.auto, torch.device("cpu")) is ConvBackend.torch
    assert resolve_conv_backend(ConvBackend.torch, torch.device("cpu")) is ConvBackend.torch

    model = torch.nn.Sequential(SubMConv3d(2, 2), torch.nn.ModuleList([SubMConv3d(2, 2)]))
    set_conv_backend(model, ConvBackend.torch, chunk_size=128)
    layers = [m for m in model.modules() if isinstance(m, SubMConv3d)]
    assert len(layers) == 2
    assert all(m.backend is ConvBackend.torch and m.chunk_size == 128 for m in layers)


def test_wrong_input_channels_raise():
    x = SparseTensor(torch.randn(2, 3), torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32))
    with pytest.raises(ValueError, match="input channels"):
        SubMConv3d(4, 2)(x)
