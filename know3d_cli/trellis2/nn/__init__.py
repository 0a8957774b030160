"""Building blocks shared by the TRELLIS.2 transformers: attention backends, RoPE, norms, timestep embedding,
the modulated cross block."""

from .attention import (
    AttentionBackend,
    cumulative_lengths,
    dense_attention,
    resolve_attention_backend,
    set_attention_backend,
    varlen_attention,
)
from .norms import LayerNorm32, MultiHeadRMSNorm
from .rope import apply_rope, grid_coords, rope_frequencies, rope_phases
from .timestep import TimestepEmbedder, timestep_sinusoids
from .transformer_block import (
    AttentionContext,
    CrossAttention,
    CrossContext,
    DenseLayout,
    FeedForward,
    FlowTransformer,
    ModulatedTransformerCrossBlock,
    PackedLayout,
    SelfAttention,
)

__all__ = [
    "AttentionBackend",
    "AttentionContext",
    "CrossAttention",
    "CrossContext",
    "DenseLayout",
    "FeedForward",
    "FlowTransformer",
    "LayerNorm32",
    "ModulatedTransformerCrossBlock",
    "MultiHeadRMSNorm",
    "PackedLayout",
    "SelfAttention",
    "TimestepEmbedder",
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
