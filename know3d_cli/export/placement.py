"""Where an exported asset sits and how big it is: the pivot a DCC expects and an optional real-world height.

TRELLIS.2 generates inside the unit cube [-0.5, 0.5]^3 with the object wherever the decoder put it. Exports are in
the glTF frame (Y up, metres), and by default the asset stands on the ground: its bounding box's lowest point on
y = 0, centred in x and z (`export.origin=base`), or its bounding-box centre on the origin (`center`).
`export.height` scales it uniformly so that its bounding box is that many metres tall; without it the unit-cube size
is kept. Every format (GLB, OBJ, PLY) gets the same placement, computed from its own exported vertices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..config import ExportOrigin
from ..errors import GenerationError


@dataclass(frozen=True)
class Placement:
    """`placed = scale * position + translation` (glTF frame)."""

    scale: float
    translation: tuple[float, float, float]

    def apply(self, positions: np.ndarray) -> np.ndarray:
        """(V, 3) positions -> (V, 3) placed positions, same dtype."""
        placed = positions.astype(np.float64) * self.scale + np.asarray(self.translation)
        return placed.astype(positions.dtype)

    def as_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "translation": list(self.translation)}


def placement_for(positions: np.ndarray, origin: ExportOrigin, height: Optional[float]) -> Placement:
    """The placement of a mesh with vertices `positions` (V, 3) in the glTF frame.

    Raises:
        GenerationError: `height` is asked for but the mesh is flat along y.
    """
    lower, upper = positions.min(axis=0).astype(np.float64), positions.max(axis=0).astype(np.float64)
    scale = 1.0
    if height is not None:
        tall = upper[1] - lower[1]
        if tall <= 1e-9:
            raise GenerationError(f"export.height={height} cannot be met: the generated mesh is flat along y "
                                  "(zero height); unset export.height or try another seed")
        scale = float(height / tall)
    anchor = (lower + upper) / 2.0
    if origin == ExportOrigin.base:
        anchor[1] = lower[1]
    translation = -scale * anchor
    return Placement(scale, (float(translation[0]), float(translation[1]), float(translation[2])))


def bounds(positions: np.ndarray) -> list[list[float]]:
    """[[min x, y, z], [max x, y, z]] of (V, 3) positions, as plain floats (metadata)."""
    return [positions.min(axis=0).astype(float).tolist(), positions.max(axis=0).astype(float).tolist()]


__all__ = ["Placement", "bounds", "placement_for"]
