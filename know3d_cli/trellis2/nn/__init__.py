"""Building blocks shared by the TRELLIS.2 transformers, one concept per file: attention kernels and backends, token
layouts, self- and cross-attention layers, the FFN, the adaLN-modulated block, RoPE, norms, the timestep embedding,
the reference mixed precision and the flows' initialisation."""

from .attention import (
    AttentionBackend,
    cumulative_lengths,
    dense_attention,
    resolve_attention_backend,
    set_attention_backend,
    varlen_attention,
)
from .cross_attention import AttentionContext, CrossAttention, CrossContext
from .feed_forward import FeedForward
from .modulated_block import EditorConditioning, EditorHook, ModulatedTransformerCrossBlock
from .norms import LayerNorm32, MultiHeadRMSNorm
from .rope import apply_rope, grid_coords, rope_frequencies, rope_phases
from .self_attention import SelfAttention
from .timestep import TimestepEmbedder, timestep_sinusoids
from .token_layout import DenseLayout, PackedLayout, TokenLayout

__all__ = [
    "AttentionBackend",
    "AttentionContext",
    "CrossAttention",
    "CrossContext",
    "DenseLayout",
    "EditorConditioning",
    "EditorHook",
    "FeedForward",
    "LayerNorm32",
    "ModulatedTransformerCrossBlock",
    "MultiHeadRMSNorm",
    "PackedLayout",
    "SelfAttention",
    "TimestepEmbedder",
    "TokenLayout",
    "apply_rope",
    "cumulative_lengths",
    "dense_attention",
    "grid_coords",
    "resolve_attention_backend",
    "rope_frequencies",
    "rope_phases",
    "set_attention_backend",
    "timestep_sinusoids",
    "varlen_attention",
]
