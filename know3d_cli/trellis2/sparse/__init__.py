"""Sparse voxel tensors and the sparse ops the TRELLIS.2 decoders and flow models run on."""

from .conv import ConvBackend, SubMConv3d, resolve_conv_backend, set_conv_backend
from .conv_torch import submanifold_conv3d
from .neighbors import build_neighbor_map, kernel_offsets, neighbor_map
from .norm import LayerNorm32
from .spatial import Coarsening, Subdivision, channel_to_spatial, child_offsets, coarsen, spatial_to_channel, subdivide
from .tensor import SparseTensor

__all__ = [
    "Coarsening",
    "ConvBackend",
    "LayerNorm32",
    "SparseTensor",
    "SubMConv3d",
    "Subdivision",
    "build_neighbor_map",
    "channel_to_spatial",
    "child_offsets",
    "coarsen",
    "kernel_offsets",
    "neighbor_map",
    "resolve_conv_backend",
    "set_conv_backend",
    "spatial_to_channel",
    "subdivide",
    "submanifold_conv3d",
]
