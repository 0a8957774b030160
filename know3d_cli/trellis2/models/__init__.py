"""TRELLIS.2 networks, named and parameterised like the released checkpoints, plus the Know3D adapter."""

from .flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder, FlexiDualGridVoxels
from .flow_base import FlowModelBase
from .know3d_adapter import EditorCondition, Know3dAdapter
from .sparse_c2s_block import SparseResBlockC2S3d
from .sparse_convnext_block import SparseConvNeXtBlock3d
from .sparse_structure_decoder import SparseStructureDecoder
from .sparse_structure_flow import SparseStructureFlowModel
from .sparse_unet_vae_decoder import SparseUnetVaeDecoder
from .structured_latent_flow import SLatFlowModel

__all__ = [
    "EditorCondition",
    "FlexiDualGridVaeDecoder",
    "FlexiDualGridVoxels",
    "FlowModelBase",
    "Know3dAdapter",
    "SLatFlowModel",
    "SparseConvNeXtBlock3d",
    "SparseResBlockC2S3d",
    "SparseStructureDecoder",
    "SparseStructureFlowModel",
    "SparseUnetVaeDecoder",
]
