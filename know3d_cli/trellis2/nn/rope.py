"""3-D rotary position embedding on integer voxel coordinates (TRELLIS.2's `pe_mode="rope"`).

Per axis F = head_dim // 2 // 3 frequencies `f_j = scale / theta^(j / F)`. A token at (x, y, z) gets the angles
`[x f_0 .. x f_{F-1}, y f_0 .., z f_0 ..]`, zero-padded to head_dim / 2 (head dim 128: 63 angles + 1 zero). Channel
pairs (2i, 2i + 1) of q and k are rotated by angle i, i.e. read as complex numbers and multiplied by `e^{i theta_i}`.
Phases are computed in fp32 from the integer coordinates and applied in fp32.
"""

from __future__ import annotations

import torch

DEFAULT_ROPE_FREQ = (1.0, 10000.0)  # (scale, theta) of the released checkpoints


def rope_frequencies(head_dim: int, rope_freq: tuple[float, float] = DEFAULT_ROPE_FREQ) -> torch.Tensor:
    """(F,) fp32 per-axis frequencies, F = head_dim // 2 // 3."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
    per_axis = head_dim // 2 // 3
    scale, theta = rope_freq
    return scale / theta ** (torch.arange(per_axis, dtype=torch.float32) / per_axis)


def rope_phases(
    coords: torch.Tensor, head_dim: int, rope_freq: tuple[float, float] = DEFAULT_ROPE_FREQ
) -> torch.Tensor:
    """Unit complex rotations for tokens at integer coordinates.

    Args:
        coords: (N, 3) integer (x, y, z) per token.
        head_dim: D (even).
        rope_freq: (scale, theta).

    Returns:
        (N, D // 2) complex64 `e^{i angle}`; angles past 3 * F are 0 (identity).
    """
    freqs = rope_frequencies(head_dim, rope_freq).to(coords.device)
    angles = coords.to(torch.float32)[:, :, None] * freqs  # (N, 3, F)
    angles = angles.flatten(1)  # (N, 3F) axis-major
    pad = head_dim // 2 - angles.shape[1]
    if pad:
        angles = torch.cat([angles, angles.new_zeros(angles.shape[0], pad)], dim=1)
    return torch.polar(torch.ones_like(angles), angles)


def grid_coords(resolution: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(R^3, 3) int64 coordinates of a dense R^3 grid in row-major token order (index = x R^2 + y R + z)."""
    axis = torch.arange(resolution, device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def apply_rope(x: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of q or k.

    Args:
        x: (..., T, H, D) per-head queries or keys (dense `(B, L, H, D)` or packed `(N, H, D)`).
        phases: (T, D // 2) complex64 from `rope_phases`.

    Returns:
        Same shape and dtype as `x` (computed in fp32).
    """
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (..., T, H, D/2)
    rotated = pairs * phases[:, None, :]
    return torch.view_as_real(rotated).reshape(x.shape).to(x.dtype)
