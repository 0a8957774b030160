"""Occupancy logits -> closed surface: bounds, outward winding, TRELLIS.2 frame, and failure on bad logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from know3d_cli.errors import GenerationError
from know3d_cli.trellis2.mesh import occupancy_to_mesh


def ball_logits(resolution: int, centre=(0.0, 0.0, 0.0), radius: float = 0.3) -> torch.Tensor:
    """(R, R, R) signed logits, positive inside a ball; array axes (x, y, z), voxel centres at (i + 0.5) / R - 0.5."""
    g = (torch.arange(resolution) + 0.5) / resolution - 0.5
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    distance = torch.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    return (radius - distance) * resolution


def as_trimesh(vertices: torch.Tensor, faces: torch.Tensor) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices.numpy().astype(np.float64), faces.numpy(), process=False)


def test_sphere_is_closed_outward_and_inside_the_unit_cube():
    vertices, faces = occupancy_to_mesh(ball_logits(32, radius=0.35))
    assert vertices.dtype == torch.float32 and faces.dtype == torch.int64
    assert vertices.abs().max() <= 0.5
    mesh = as_trimesh(vertices, faces)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(4.0 / 3.0 * math.pi * 0.35**3, rel=0.02)  # positive: faces point out
    radii = vertices.norm(dim=1)
    assert radii.min() > 0.33 and radii.max() < 0.37


def test_off_centre_blob_keeps_its_position():
    """Array axis 0 is x: a blob at high x indices lands at +x, and likewise for y and z."""
    centre = (0.2, -0.1, 0.15)
    vertices, faces = occupancy_to_mesh(ball_logits(32, centre=centre, radius=0.15))
    mesh = as_trimesh(vertices, faces)
    np.testing.assert_allclose(mesh.center_mass, centre, atol=0.01)


def test_single_voxel_surface_is_centred_on_the_voxel():
    """Voxel (i, j, k) has its centre at (index + 0.5) / R - 0.5."""
    resolution = 8
    logits = torch.full((resolution,) * 3, -1.0)
    logits[6, 1, 3] = 1.0
    vertices, faces = occupancy_to_mesh(logits)
    expected = (torch.tensor([6.0, 1.0, 3.0]) + 0.5) / resolution - 0.5
    torch.testing.assert_close(vertices.mean(dim=0), expected)
    # level 0 lies halfway between the centres of the voxel (+1) and its neighbours (-1)
    assert (vertices - expected).abs().max() == pytest.approx(0.5 / resolution, abs=1e-6)
    assert as_trimesh(vertices, faces).volume > 0


def test_object_touching_the_border_is_closed():
    logits = torch.full((8, 8, 8), -1.0)
    logits[:, :3, :] = 1.0  # a slab through the whole grid
    vertices, faces = occupancy_to_mesh(logits)
    mesh = as_trimesh(vertices, faces)
    assert mesh.is_watertight and mesh.volume > 0
    assert vertices.min() >= -0.5 and vertices.max() <= 0.5


def test_empty_structure_raises():
    with pytest.raises(GenerationError, match="empty"):
        occupancy_to_mesh(torch.full((8, 8, 8), -2.0))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_raise(bad):
    logits = ball_logits(8)
    logits[2, 3, 4] = bad
    with pytest.raises(GenerationError, match="non-finite"):
        occupancy_to_mesh(logits)


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match="R, R, R"):
        occupancy_to_mesh(torch.zeros(1, 8, 8, 8))
