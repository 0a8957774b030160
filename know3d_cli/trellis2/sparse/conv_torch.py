"""Reference submanifold 3x3x3 convolution in plain PyTorch (exact; runs on any device).

Two equivalent formulations, chunked over output rows so millions of voxels fit in memory:

- `offset`: for each of the 26 off-centre kernel slots, gather the input rows that have a neighbour there,
  multiply by that slot's (Ci, Co) weight and `index_add_` into the output. It only multiplies existing
  neighbours (surface shells fill about 15 of 27 slots), so it is the faster one on CPU (1.3-1.7x at 128-1024
  channels; on par at 64, see scripts/bench_sparse_conv.py).
- `gemm`: implicit GEMM, gathering (rows, 27*Ci) with a zero row for missing neighbours and multiplying by the
  whole (27*Ci, Co) weight at once. Every output is one GEMM, so reduced precision accumulates in the GEMM's
  fp32 accumulator exactly as a fused kernel would; preferred on GPUs.
"""

from __future__ import annotations

import torch

from .neighbors import CENTER, KERNEL_VOLUME

# Scratch memory one chunk may use (gathered inputs plus its GEMM output). It bounds peak memory; GPUs get larger
# chunks so each GEMM is big enough to fill the device.
_CHUNK_BYTES_CPU = 128 * 2**20
_CHUNK_BYTES_GPU = 512 * 2**20


def _rows_per_chunk(feats: torch.Tensor, per_row_elems: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return max(1, int(chunk_size))
    budget = _CHUNK_BYTES_CPU if feats.device.type == "cpu" else _CHUNK_BYTES_GPU
    return max(1024, budget // max(1, per_row_elems * feats.element_size()))


def _tracks_grad(feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    # `out=` buffers cannot record autograd history; inference (the decoders) never needs it.
    tensors = (feats, weight) if bias is None else (feats, weight, bias)
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def submanifold_conv3d_offset(
    feats: torch.Tensor,
    neighbors: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Per-offset gather / matmul / scatter-add form. Arguments as in `submanifold_conv3d`."""
    n, ci = feats.shape
    co = weight.shape[0]
    w = weight.reshape(co, KERNEL_VOLUME, ci)  # (Co, 27, Ci); w[:, k] is a strided (Co, Ci) view, no copy
    rows_per_chunk = _rows_per_chunk(feats, ci + co, chunk_size)
    if _tracks_grad(feats, weight, bias):
        return _offset_autograd(feats, neighbors, w, bias, rows_per_chunk)
    out = torch.empty(n, co, dtype=feats.dtype, device=feats.device)
    gathered = feats.new_empty(min(n, rows_per_chunk), ci)
    product = feats.new_empty(min(n, rows_per_chunk), co)
    for start in range(0, n, rows_per_chunk):
        stop = min(start + rows_per_chunk, n)
        block = out[start:stop]
        if bias is None:
            torch.mm(feats[start:stop], w[:, CENTER].t(), out=block)
        else:
            torch.addmm(bias, feats[start:stop], w[:, CENTER].t(), out=block)
        nbr = neighbors[start:stop].t()  # (27, rows)
        present = nbr >= 0
        for k in range(KERNEL_VOLUME):
            if k == CENTER:
                continue
            rows = present[k].nonzero().squeeze(1)  # (E,) output rows (chunk-local) with a neighbour at slot k
            e = rows.shape[0]
            if e == 0:
                continue
            torch.index_select(feats, 0, nbr[k].index_select(0, rows), out=gathered[:e])
            torch.mm(gathered[:e], w[:, k].t(), out=product[:e])
            block.index_add_(0, rows, product[:e])
    return out


def _offset_autograd(
    feats: torch.Tensor, neighbors: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, rows_per_chunk: int
) -> torch.Tensor:
    """Out-of-place twin of the offset form for when gradients are tracked (no `out=` buffers)."""
    blocks = []
    for start in range(0, feats.shape[0], rows_per_chunk):
        stop = min(start + rows_per_chunk, feats.shape[0])
        block = feats[start:stop] @ w[:, CENTER].t()
        if bias is not None:
            block = block + bias
        nbr = neighbors[start:stop]
        for k in range(KERNEL_VOLUME):
            rows = (nbr[:, k] >= 0).nonzero().squeeze(1)
            if k == CENTER or rows.shape[0] == 0:
                continue
            block = block.index_add(0, rows, feats[nbr[rows, k]] @ w[:, k].t())
        blocks.append(block)
    return torch.cat(blocks) if blocks else feats.new_empty(0, w.shape[0])


def submanifold_conv3d_gemm(
    feats: torch.Tensor,
    neighbors: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Implicit-GEMM form. Arguments as in `submanifold_conv3d`."""
    n, ci = feats.shape
    co = weight.shape[0]
    w = weight.reshape(co, KERNEL_VOLUME * ci)  # (Co, 27*Ci), contiguous view of the checkpoint layout
    padded = torch.cat([feats, feats.new_zeros(1, ci)])  # row n is the zero row that misses point to
    rows_per_chunk = _rows_per_chunk(feats, KERNEL_VOLUME * ci + co, chunk_size)
    if _tracks_grad(feats, weight, bias):
        blocks = []
        for start in range(0, n, rows_per_chunk):
            nbr = neighbors[start : start + rows_per_chunk]
            g = padded[torch.where(nbr >= 0, nbr, n)].reshape(nbr.shape[0], KERNEL_VOLUME * ci)
            blocks.append(g @ w.t() if bias is None else torch.addmm(bias, g, w.t()))
        return torch.cat(blocks) if blocks else feats.new_empty(0, co)
    out = torch.empty(n, co, dtype=feats.dtype, device=feats.device)
    gathered = feats.new_empty(min(n, rows_per_chunk) * KERNEL_VOLUME, ci)
    for start in range(0, n, rows_per_chunk):
        stop = min(start + rows_per_chunk, n)
        nbr = neighbors[start:stop]
        index = torch.where(nbr >= 0, nbr, n).reshape(-1)  # (rows*27,)
        g = torch.index_select(padded, 0, index, out=gathered[: index.shape[0]])
        g = g.view(stop - start, KERNEL_VOLUME * ci)
        if bias is None:
            torch.mm(g, w.t(), out=out[start:stop])
        else:
            torch.addmm(bias, g, w.t(), out=out[start:stop])
    return out


def submanifold_conv3d(
    feats: torch.Tensor,
    neighbors: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    chunk_size: int | None = None,
    algorithm: str = "auto",
) -> torch.Tensor:
    """Submanifold 3x3x3 convolution: `out[p] = bias + sum_k W[:, k, :] @ feats[neighbors[p, k]]` over existing k.

    Args:
        feats: (N, Ci) float input features.
        neighbors: (N, 27) int64 neighbour rows from `neighbors.build_neighbor_map`, -1 where missing.
        weight: (Co, 3, 3, 3, Ci) checkpoint (FlexGEMM) layout, same dtype as `feats`.
        bias: (Co,) or None.
        chunk_size: output rows per chunk; None sizes chunks to ~128 MiB of scratch (512 MiB off CPU).
        algorithm: "offset", "gemm" or "auto" (offset on CPU, gemm elsewhere).

    Returns:
        (N, Co) features in `feats.dtype`.
    """
    if algorithm == "auto":
        algorithm = "offset" if feats.device.type == "cpu" else "gemm"
    if algorithm == "offset":
        return submanifold_conv3d_offset(feats, neighbors, weight, bias, chunk_size)
    if algorithm == "gemm":
        return submanifold_conv3d_gemm(feats, neighbors, weight, bias, chunk_size)
    raise ValueError(f"unknown sparse conv algorithm {algorithm!r}; expected 'auto', 'offset' or 'gemm'")
