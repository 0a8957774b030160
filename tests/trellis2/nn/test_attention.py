"""Dense and packed variable-length attention against explicit softmax attention, and backend resolution."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.errors import BackendUnavailable
from know3d_cli.trellis2.nn import attention as attention_mod
from know3d_cli.trellis2.nn.attention import (
    AttentionBackend,
    cumulative_lengths,
    dense_attention,
    resolve_attention_backend,
    set_attention_backend,
    varlen_attention,
)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q: (Lq, H, D), k/v: (Lk, H, D) -> (Lq, H, D), written out in float64."""
    q, k, v = q.double(), k.double(), v.double()
    scores = torch.einsum("qhd,khd->hqk", q, k) / q.shape[-1] ** 0.5
    return torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), v)


def test_dense_attention_matches_explicit():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 3, 8, generator=gen) for _ in range(3))
    k, v = k[:, :4], v[:, :4]  # different key length
    out = dense_attention(q, k, v, AttentionBackend.sdpa)
    assert out.shape == (2, 5, 3, 8)
    for b in range(2):
        torch.testing.assert_close(out[b].double(), softmax_attention(q[b], k[b], v[b]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "q_lengths,kv_lengths", [([3, 7, 1, 5], [3, 7, 1, 5]), ([4, 2, 6], [5, 5, 5]), ([9], [2])]
)
def test_varlen_equals_per_sample_loop(q_lengths, kv_lengths):
    gen = torch.Generator().manual_seed(1)
    heads, dim = 2, 8
    q = torch.randn(sum(q_lengths), heads, dim, generator=gen)
    k = torch.randn(sum(kv_lengths), heads, dim, generator=gen)
    v = torch.randn(sum(kv_lengths), heads, dim, generator=gen)
    out = varlen_attention(q, k, v, q_lengths, kv_lengths, AttentionBackend.sdpa)
    qs, ks = 0, 0
    for nq, nk in zip(q_lengths, kv_lengths):
        want = softmax_attention(q[qs : qs + nq], k[ks : ks + nk], v[ks : ks + nk])
        torch.testing.assert_close(out[qs : qs + nq].double(), want, atol=1e-5, rtol=1e-5)
        qs, ks = qs + nq, ks + nk


def test_varlen_samples_do_not_mix():
    gen = torch.Generator().manual_seed(2)
    lengths = [4, 6]
    q, k, v = (torch.randn(10, 2, 8, generator=gen) for _ in range(3))
    out = varlen_attention(q, k, v, lengths, lengths)
    k2, v2 = k.clone(), v.clone()
    k2[4:] += 5.0  # change sample 1's keys/values only
    v2[4:] -= 3.0
    out2 = varlen_attention(q, k2, v2, lengths, lengths)
    assert torch.equal(out[:4], out2[:4])
    assert not torch.allclose(out[4:], out2[4:])


def test_cumulative_lengths():
    assert cumulative_lengths([3, 0, 2], torch.device("cpu")).tolist() == [0, 3, 3, 5]


def test_backend_resolution(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_attention_backend(AttentionBackend.auto, cpu, torch.float32) is AttentionBackend.sdpa
    assert resolve_attention_backend(AttentionBackend.sdpa, cpu, torch.bfloat16) is AttentionBackend.sdpa

    monkeypatch.setattr(attention_mod, "_flash_attn_module", lambda: None)
    with pytest.raises(BackendUnavailable, match="flash-attn"):
        resolve_attention_backend(AttentionBackend.flash_attn, torch.device("cuda"), torch.bfloat16)
    cuda, auto, sdpa = torch.device("cuda"), AttentionBackend.auto, AttentionBackend.sdpa
    assert resolve_attention_backend(auto, cuda, torch.bfloat16) is sdpa

    monkeypatch.setattr(attention_mod, "_flash_attn_module", lambda: object())
    assert resolve_attention_backend(auto, cuda, torch.bfloat16) is AttentionBackend.flash_attn
    assert resolve_attention_backend(auto, cuda, torch.float32) is sdpa
    assert resolve_attention_backend(AttentionBackend.auto, cpu, torch.bfloat16) is AttentionBackend.sdpa
    with pytest.raises(BackendUnavailable):
        resolve_attention_backend(AttentionBackend.flash_attn, cpu, torch.bfloat16)


def test_set_attention_backend_on_layers():
    from know3d_cli.trellis2.nn import CrossAttention, SelfAttention

    module = torch.nn.ModuleList([SelfAttention(16, 2, True), CrossAttention(16, 8, 2, True)])
    set_attention_backend(module, AttentionBackend.sdpa)
    assert all(layer.attention_backend is AttentionBackend.sdpa for layer in module)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_flash_attn_matches_sdpa():
    pytest.importorskip("flash_attn")
    gen = torch.Generator(device="cuda").manual_seed(0)
    lengths = [37, 100, 5]
    q, k, v = (torch.randn(sum(lengths), 4, 64, generator=gen, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ref = varlen_attention(q, k, v, lengths, lengths, AttentionBackend.sdpa)
    fast = varlen_attention(q, k, v, lengths, lengths, AttentionBackend.flash_attn)
    torch.testing.assert_close(fast.float(), ref.float(), atol=2e-2, rtol=2e-2)
    qd, kd, vd = (t[:36].reshape(2, 18, 4, 64) for t in (q, k, v))
    torch.testing.assert_close(
        dense_attention(qd, kd, vd, AttentionBackend.flash_attn).float(),
        dense_attention(qd, kd, vd, AttentionBackend.sdpa).float(),
        atol=2e-2, rtol=2e-2,
    )
