"""3-D RoPE against explicit 2x2 rotation matrices, incl. head dims not divisible by 6 (zero-padded angles)."""

from __future__ import annotations

import math

import pytest
import torch

from know3d_cli.trellis2.nn.rope import apply_rope, grid_coords, rope_frequencies, rope_phases


def explicit_rotation(x: torch.Tensor, coords: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """x: (T, H, D); rotate pair i of token n by the angle built from the per-axis formula, with matrices."""
    per_axis = head_dim // 2 // 3
    out = x.clone().double()
    for n in range(x.shape[0]):
        for i in range(head_dim // 2):
            if i < 3 * per_axis:
                axis, j = divmod(i, per_axis)
                angle = float(coords[n, axis]) * (1.0 / theta ** (j / per_axis))
            else:
                angle = 0.0
            rot = torch.tensor(
                [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64
            )
            out[n, :, 2 * i : 2 * i + 2] = x[n, :, 2 * i : 2 * i + 2].double() @ rot.T
    return out


@pytest.mark.parametrize("head_dim", [128, 20, 16, 10])
def test_rope_matches_rotation_matrices(head_dim):
    gen = torch.Generator().manual_seed(0)
    coords = torch.randint(0, 64, (5, 3), generator=gen)
    x = torch.randn(5, 3, head_dim, generator=gen)
    got = apply_rope(x, rope_phases(coords, head_dim))
    want = explicit_rotation(x, coords, head_dim)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


def test_released_head_dim_layout():
    # head dim 128: 21 frequencies per axis, 63 angles + 1 zero pad
    freqs = rope_frequencies(128)
    assert freqs.shape == (21,)
    torch.testing.assert_close(freqs, 1.0 / 10000 ** (torch.arange(21, dtype=torch.float32) / 21))
    phases = rope_phases(torch.tensor([[3, 5, 7]]), 128)
    assert phases.shape == (1, 64) and phases.dtype == torch.complex64
    assert phases[0, 63] == 1  # the pad angle is zero
    torch.testing.assert_close(phases[0, 21].angle(), torch.tensor(5.0 - 2 * math.pi))  # y * f_0, wrapped


def test_padding_channels_are_untouched():
    # head dim 20: F = 3 per axis -> 9 angles, pair 9 (channels 18, 19) is the zero pad
    x = torch.randn(4, 2, 20)
    out = apply_rope(x, rope_phases(torch.randint(1, 9, (4, 3)), 20))
    assert torch.equal(out[..., 18:], x[..., 18:])
    assert not torch.allclose(out[..., :18], x[..., :18])


def test_scores_depend_only_on_relative_position():
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 32, generator=gen), torch.randn(1, 1, 32, generator=gen)
    shift = torch.tensor([[4, -2, 7]])
    a, b = torch.tensor([[1, 2, 3]]), torch.tensor([[5, 0, 9]])
    score = (apply_rope(q, rope_phases(a, 32)) * apply_rope(k, rope_phases(b, 32))).sum()
    shifted = (apply_rope(q, rope_phases(a + shift, 32)) * apply_rope(k, rope_phases(b + shift, 32))).sum()
    torch.testing.assert_close(score, shifted, atol=1e-5, rtol=1e-5)


def test_bf16_input_keeps_dtype():
    x = torch.randn(6, 2, 16).bfloat16()
    out = apply_rope(x, rope_phases(torch.randint(0, 8, (6, 3)), 16))
    assert out.dtype == torch.bfloat16 and out.shape == x.shape


def test_grid_coords_row_major():
    coords = grid_coords(3)
    assert coords.shape == (27, 3)
    index = coords[:, 0] * 9 + coords[:, 1] * 3 + coords[:, 2]
    assert torch.equal(index, torch.arange(27))


def test_odd_head_dim_rejected():
    with pytest.raises(ValueError):
        rope_frequencies(15)
