"""The on-disk schema of a Know3D training dataset: what `know3d data build` writes and `know3d train` reads.

A dataset folder (written by `writer.DatasetWriter`, one writer for `know3d data build` and the synthetic set)::

    DATASET/
      dataset.json                   # schema version, shape_resolution, dino_resolutions, K, models and revisions,
                                     #   settings (equal for every shard writing here), who built it
      index/shard-<i>-of-<n>.jsonl   # one line per finished sample: {"id", "dir", "source", "sha256", "prompts",
                                     #   "counts"}; `know3d train` reads the union of every shard's file
      failures/shard-<i>-of-<n>.jsonl  # one line per failed asset: {"id", "source", "error", "code", "reason", ...}
      samples/<id>/
        sample.json             # the index fields, camera, caption parts, each variant's parts and seed, tap, timings
        front.png, back.png     # RGBA renders at the front azimuth and azimuth + 180 degrees (inference crop)
        latents.safetensors     # LATENT_TENSORS
        conditions.safetensors  # CONDITION_TENSORS

Symbolic sizes: N = active latent voxels at the shape-latent grid (`resolution / 16`), M = occupied voxels of the
64^3 sparse structure, T / T1024 = DINOv3 tokens at side 512 / 1024 (1 + registers + (side / 16)^2), K = prompt
variants, (h, w) = the editor's token grid after the tap, C_dino / C_edit = the DINOv3 / editor hidden sizes. A
sample folder appears only when every file in it is complete (it is written under a temporary name and renamed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
SAMPLE_FILE = "sample.json"
LATENTS_FILE = "latents.safetensors"
CONDITIONS_FILE = "conditions.safetensors"
DATASET_FILE = "dataset.json"
SS_GRID = 64  # side of the sparse-structure occupancy grid (`occupancy` coordinates are in [0, 64))


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # ints are fixed, strings are the symbolic sizes of the module docstring
    dtype: str  # torch dtype name
    doc: str
    optional: bool = False  # a sample may leave it out

    def problem(self, tensor: Any, sizes: dict[str, int]) -> str | None:
        """Why `tensor` does not match this spec (dtype, rank, fixed sizes, symbolic sizes already in `sizes`),
        or None; symbolic sizes seen for the first time are added to `sizes`."""
        shape = tuple(tensor.shape)
        if str(tensor.dtype).removeprefix("torch.") != self.dtype:
            return f"{self.name} is {str(tensor.dtype).removeprefix('torch.')}, expected {self.dtype}"
        if len(shape) != len(self.shape):
            return f"{self.name} has shape {list(shape)}, expected {list(self.shape)}"
        for want, got in zip(self.shape, shape):
            if isinstance(want, int) and want != got or isinstance(want, str) and sizes.setdefault(want, got) != got:
                return f"{self.name} has shape {list(shape)}, expected {list(self.shape)} with {sizes}"
        return None


LATENT_TENSORS = (
    TensorSpec("occupancy", ("M", 3), "int32", "occupied (x, y, z) of the 64^3 sparse structure, lexicographic"),
    TensorSpec("ss_latent", (8, 16, 16, 16), "float32", "SS encoder posterior mean of the occupancy (SS flow target)"),
    # the SC-VAE latents are absent from an SS-only dataset (`data.latents=ss`, dataset.json shape_resolution null)
    TensorSpec("shape_coords", ("N", 3), "int32", "(x, y, z) of the shape latent at resolution / 16, lexicographic",
               optional=True),
    TensorSpec("shape_feats", ("N", 32), "float32", "shape SC-VAE posterior mean, not normalised", optional=True),
    TensorSpec("tex_feats", ("N", 32), "float32", "texture SC-VAE posterior mean on shape_coords, not normalised",
               optional=True),
)

# Keys of dataset.json that `know3d train` reads (the file may hold more).
DATASET_KEYS = (
    "schema_version",  # int: SCHEMA_VERSION of the writer
    "shape_resolution",  # int: O-Voxel resolution of shape_coords / shape_feats (512: 32^3 grid, 1024: 64^3 grid);
    #   null: an SS-only dataset (data.latents=ss), usable by train=ss only
)
# Keys of an index line that `know3d train` reads: the sample id, its folder relative to DATASET/, and the K exact
# editor instructions (P_view + a subset of the caption parts); hdit[k] was tapped with prompts[k].
INDEX_KEYS = ("id", "dir", "prompts")

CONDITION_TENSORS = (
    TensorSpec("dino_512", ("T", "C_dino"), "float16", "DINOv3 tokens of front.png at 512 (SS and 512 flows)"),
    TensorSpec("dino_1024", ("T1024", "C_dino"), "float16", "DINOv3 tokens of front.png at 1024 (1024 flows)",
               optional=True),
    TensorSpec("hdit", ("K", "h", "w", "C_edit"), "bfloat16", "tapped editor hidden states, one per prompt variant"),
)

__all__ = [
    "CONDITIONS_FILE", "CONDITION_TENSORS", "DATASET_FILE", "DATASET_KEYS", "INDEX_KEYS", "LATENTS_FILE",
    "LATENT_TENSORS", "SAMPLE_FILE", "SCHEMA_VERSION", "SS_GRID", "TensorSpec",
]
