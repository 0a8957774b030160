"""Quadratic error functions (QEF) of dual vertices, and their minimum inside each voxel.

A QEF is E(x) = x^T A x + 2 b^T x + c over a point x in voxel-local units (the voxel's minimum corner is the
origin, so numbers stay small). It is stored packed as 10 values per voxel: A's (xx, xy, xz, yy, yz, zz), b's
(x, y, z), then c. A plane n.x + d = 0 contributes (n n^T, d n, d^2); a line through p along unit u contributes
(I - u u^T, -(I - u u^T) p, p^T (I - u u^T) p); a pull towards a point m contributes (I, -m, m.m).

`minimize_in_unit_box` is the constrained solve TRELLIS.2's o-voxel toolkit uses: take the unconstrained minimum if
it lies in the voxel, else the best of the minima restricted to each face (one coordinate fixed at 0 or 1), each
edge (two fixed) and the 8 corners.
"""

from __future__ import annotations

import itertools

import torch

_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # packed order of A's entries
_SYMMETRIC = torch.tensor([0, 1, 2, 1, 3, 4, 2, 4, 5])  # packed entry of A[i, j], row-major


def plane_qef(normal: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(N, 3) unit normals and (N,) offsets d of planes n.x + d = 0 -> (N, 10) packed QEFs."""
    a = torch.stack([normal[:, i] * normal[:, j] for i, j in _UPPER], dim=1)
    return torch.cat([a, normal * offset[:, None], (offset * offset)[:, None]], dim=1)


def line_qef(point: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """(N, 3) points on lines and (N, 3) unit directions -> (N, 10) packed QEFs of the squared line distance."""
    eye = torch.eye(3, dtype=point.dtype)
    a = eye - direction[:, :, None] * direction[:, None, :]  # (N, 3, 3)
    ap = torch.einsum("nij,nj->ni", a, point)
    packed = torch.stack([a[:, i, j] for i, j in _UPPER], dim=1)
    return torch.cat([packed, -ap, (point * ap).sum(dim=1, keepdim=True)], dim=1)


def point_qef(point: torch.Tensor) -> torch.Tensor:
    """(N, 3) points -> (N, 10) packed QEFs of the squared distance to each point."""
    ones = torch.ones_like(point[:, 0])
    zeros = torch.zeros_like(ones)
    a = torch.stack([ones, zeros, zeros, ones, zeros, ones], dim=1)
    return torch.cat([a, -point, (point * point).sum(dim=1, keepdim=True)], dim=1)


def translate_qef(qef: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """(N, 10) packed QEFs over x and (N, 3) new origins -> the same errors over y = x - origin, packed."""
    a, b, c = unpack(qef)
    a_o = torch.einsum("nij,nj->ni", a, origin)
    return torch.cat([qef[:, :6], b + a_o, (c + 2 * (b * origin).sum(dim=1) + (origin * a_o).sum(dim=1))[:, None]],
                     dim=1)


def unpack(qef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 10) packed -> A (N, 3, 3), b (N, 3), c (N,)."""
    a = qef[:, _SYMMETRIC].reshape(-1, 3, 3)
    return a, qef[:, 6:9], qef[:, 9]


def minimize_in_unit_box(qef: torch.Tensor) -> torch.Tensor:
    """(N, 10) packed QEFs (A positive definite) -> (N, 3) minimiser of E inside [0, 1]^3, same dtype."""
    a, b, c = unpack(qef)
    x = torch.linalg.solve(a, -b)
    outside = ((x < 0) | (x > 1)).any(dim=1)
    if outside.any():
        x[outside] = _best_on_boundary(a[outside], b[outside], c[outside])
    return x


def _energy(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """E at candidate points x (M, K, 3) -> (M, K)."""
    return torch.einsum("mki,mij,mkj->mk", x, a, x) + 2 * torch.einsum("mki,mi->mk", x, b) + c[:, None]


def _best_on_boundary(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    candidates, valid = [], []
    for fixed in range(3):  # faces: one coordinate at 0 or 1, minimise over the other two
        free = [(fixed + 1) % 3, (fixed + 2) % 3]
        a_ff = a[:, free][:, :, free]  # (M, 2, 2)
        for value in (0.0, 1.0):
            rhs = -(a[:, free, fixed] * value + b[:, free])
            y = torch.linalg.solve(a_ff, rhs)
            point = torch.empty_like(b)
            point[:, fixed] = value
            point[:, free] = y
            candidates.append(point)
            valid.append(((y >= 0) & (y <= 1)).all(dim=1))
    for free in range(3):  # edges: two coordinates at 0 or 1, minimise over the third
        fixed = [(free + 1) % 3, (free + 2) % 3]
        for v1, v2 in itertools.product((0.0, 1.0), repeat=2):
            t = -(a[:, free, fixed[0]] * v1 + a[:, free, fixed[1]] * v2 + b[:, free]) / a[:, free, free]
            point = torch.empty_like(b)
            point[:, free] = t
            point[:, fixed[0]] = v1
            point[:, fixed[1]] = v2
            candidates.append(point)
            valid.append((t >= 0) & (t <= 1))
    for corner in itertools.product((0.0, 1.0), repeat=3):
        candidates.append(torch.tensor(corner, dtype=b.dtype).expand_as(b))
        valid.append(torch.ones_like(b[:, 0], dtype=torch.bool))
    points = torch.stack(candidates, dim=1)  # (M, 26, 3)
    energy = _energy(a, b, c, points).masked_fill(~torch.stack(valid, dim=1), float("inf"))
    best = energy.argmin(dim=1)
    return points[torch.arange(points.shape[0]), best]


__all__ = ["line_qef", "minimize_in_unit_box", "plane_qef", "point_qef", "translate_qef", "unpack"]
