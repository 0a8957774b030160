"""Softmax attention for the TRELLIS.2 transformers: dense `(B, L, H, D)` and packed variable-length tokens.

The reference path is `torch.nn.functional.scaled_dot_product_attention` (per batch item for packed tokens); the
`flash_attn` path calls the flash-attn kernels (`flash_attn_func`, `flash_attn_varlen_func`). The backend is a value
passed on every call (layers store their own `AttentionBackend`, set once by the caller); `auto` resolves per call
from the input's device and dtype and what imports.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Sequence
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from ..backends import AttentionBackend
from ...errors import BackendUnavailable

logger = logging.getLogger(__name__)

_FLASH_DTYPES = (torch.float16, torch.bfloat16)


@functools.lru_cache(maxsize=None)
def _flash_attn_module() -> ModuleType | None:
    """The `flash_attn` package, or None when it is missing or fails to import (e.g. built for another torch)."""
    try:
        return importlib.import_module("flash_attn")
    except Exception as exc:  # noqa: BLE001 - a broken CUDA extension raises all kinds of errors at import
        logger.debug("flash_attn is not usable: %s", exc)
        return None


def resolve_attention_backend(backend: AttentionBackend, device: torch.device, dtype: torch.dtype) -> AttentionBackend:
    """The concrete backend (`sdpa` or `flash_attn`) for inputs of `dtype` on `device`; an unusable explicit
    choice raises `BackendUnavailable` naming what is missing."""
    flash_ok = device.type == "cuda" and dtype in _FLASH_DTYPES
    if backend is AttentionBackend.auto:
        if flash_ok and _flash_attn_module() is not None:
            return AttentionBackend.flash_attn
        return AttentionBackend.sdpa
    if backend is AttentionBackend.flash_attn:
        if _flash_attn_module() is None:
            raise BackendUnavailable(
                "runtime.attention=flash_attn needs the flash-attn package (pip install flash-attn "
                "--no-build-isolation), which is not importable here; use runtime.attention=auto or sdpa"
            )
        if not flash_ok:
            raise BackendUnavailable(
                f"runtime.attention=flash_attn runs only fp16/bf16 inputs on CUDA, got {dtype} on {device}; "
                "use runtime.attention=auto or sdpa"
            )
    return backend


def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    backend: AttentionBackend = AttentionBackend.auto,
) -> torch.Tensor:
    """Full (non-causal) softmax attention, scale 1/sqrt(D).

    Args:
        q: (B, Lq, H, D) queries.
        k: (B, Lk, H, D) keys.
        v: (B, Lk, H, D) values.
        backend: which implementation (`auto` resolves from the inputs).

    Returns:
        (B, Lq, H, D) in the dtype of `q`.
    """
    backend = resolve_attention_backend(backend, q.device, q.dtype)
    if backend is AttentionBackend.flash_attn:
        return _flash_attn_module().flash_attn_func(q, k, v)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, H, Lq, D)
    return out.transpose(1, 2)


def cumulative_lengths(lengths: Sequence[int], device: torch.device) -> torch.Tensor:
    """(B + 1,) int32 offsets `[0, l0, l0 + l1, ...]` of packed sequences (flash-attn's `cu_seqlens`)."""
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + int(n))
    return torch.tensor(offsets, dtype=torch.int32, device=device)


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_lengths: Sequence[int],
    kv_lengths: Sequence[int],
    backend: AttentionBackend = AttentionBackend.auto,
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_kv: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention over packed sequences: batch item b's queries attend only to batch item b's keys.

    Args:
        q: (Nq, H, D) queries of all batch items, item after item (`q_lengths[b]` rows each).
        k: (Nk, H, D) keys, packed the same way with `kv_lengths`.
        v: (Nk, H, D) values.
        q_lengths: rows per batch item in `q`.
        kv_lengths: rows per batch item in `k`/`v` (same number of items).
        backend: which implementation (`auto` resolves from the inputs).
        cu_seqlens_q: optional precomputed `cumulative_lengths(q_lengths)` on q's device (flash-attn path).
        cu_seqlens_kv: optional precomputed `cumulative_lengths(kv_lengths)`.

    Returns:
        (Nq, H, D) in the dtype of `q`.
    """
    if len(q_lengths) != len(kv_lengths):
        raise ValueError(f"{len(q_lengths)} query sequences but {len(kv_lengths)} key sequences")
    backend = resolve_attention_backend(backend, q.device, q.dtype)
    if backend is AttentionBackend.flash_attn:
        if cu_seqlens_q is None:
            cu_seqlens_q = cumulative_lengths(q_lengths, q.device)
        if cu_seqlens_kv is None:
            cu_seqlens_kv = cumulative_lengths(kv_lengths, q.device)
        return _flash_attn_module().flash_attn_varlen_func(
            q, k, v, cu_seqlens_q, cu_seqlens_kv, max(q_lengths), max(kv_lengths)
        )
    out = q.new_empty(q.shape)
    q_start = kv_start = 0
    for nq, nk in zip(q_lengths, kv_lengths):
        q_end, kv_end = q_start + nq, kv_start + nk
        if nq:
            qb = q[q_start:q_end].transpose(0, 1).unsqueeze(0)  # (1, H, nq, D)
            kb = k[kv_start:kv_end].transpose(0, 1).unsqueeze(0)  # (1, H, nk, D)
            vb = v[kv_start:kv_end].transpose(0, 1).unsqueeze(0)
            out[q_start:q_end] = F.scaled_dot_product_attention(qb, kb, vb)[0].transpose(0, 1)
        q_start, kv_start = q_end, kv_end
    return out


def set_attention_backend(module: nn.Module, backend: AttentionBackend) -> None:
    """Set `attention_backend` on every layer inside `module` that has one (self- and cross-attention layers)."""
    for layer in module.modules():
        if hasattr(layer, "attention_backend"):
            layer.attention_backend = backend
