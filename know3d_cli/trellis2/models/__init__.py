"""TRELLIS.2 networks, named and parameterised like the released checkpoints, plus the Know3D adapter."""

from .flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder, FlexiDualGridVoxels
from .flexi_dual_grid_vae_encoder import FlexiDualGridVaeEncoder
from .flow_base import FlowModelBase
from .know3d_adapter import EditorCondition, Know3dAdapter
from .latent_posterior import LatentPosterior
from .sparse_c2s_block import SparseResBlockC2S3d
from .sparse_convnext_block import SparseConvNeXtBlock3d
from .sparse_s2c_block import SparseResBlockS2C3d
from .sparse_structure_decoder import SparseStructureDecoder
from .sparse_structure_encoder import SparseStructureEncoder
from .sparse_structure_flow import SparseStructureFlowModel
from .sparse_unet_vae_decoder import SparseUnetVaeDecoder
from .sparse_unet_vae_encoder import SparseUnetVaeEncoder
from .structured_latent_flow import SLatFlowModel

__all__ = [
    "EditorCondition",
    "FlexiDualGridVaeDecoder",
    "FlexiDualGridVaeEncoder",
    "FlexiDualGridVoxels",
    "FlowModelBase",
    "Know3dAdapter",
    "LatentPosterior",
    "SLatFlowModel",
    "SparseConvNeXtBlock3d",
    "SparseResBlockC2S3d",
    "SparseResBlockS2C3d",
    "SparseStructureDecoder",
    "SparseStructureEncoder",
    "SparseStructureFlowModel",
    "SparseUnetVaeDecoder",
    "SparseUnetVaeEncoder",
]
