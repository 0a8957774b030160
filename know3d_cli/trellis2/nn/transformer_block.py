"""The modulated cross-attention transformer block of the TRELLIS.2 flow models, and the trunk they share.

One block implementation serves dense tokens `(B, L, C)` (sparse-structure flow) and packed sparse tokens `(N, C)`
(structured-latent flows): a token layout (`DenseLayout` or `PackedLayout`) says how rows map to batch items, how a
per-sample `(B, C)` vector broadcasts over them, and how attention is restricted to one sample. Everything else
(`Linear`, norms, RoPE on the last dims) is shape-agnostic.

Block math (spec section 2.1), with the optional Know3D hook between the image cross-attention and the FFN:

    h = LN(x) * (1 + scale_msa) + shift_msa;  x = x + gate_msa * SelfAttn(h)
    x = x + CrossAttn(LN_affine(x), cond)
    x = x + ext(x)                                    # Know3D adapter, only when given
    h = LN(x) * (1 + scale_mlp) + shift_mlp;  x = x + gate_mlp * FFN(h)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Protocol, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError
from ..sparse.tensor import SparseTensor
from .attention import AttentionBackend, cumulative_lengths, dense_attention, set_attention_backend, varlen_attention
from .norms import LayerNorm32, MultiHeadRMSNorm
from .rope import apply_rope
from .timestep import TimestepEmbedder

logger = logging.getLogger(__name__)

_DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# --------------------------------------------------------------------------------------------- token layouts
class DenseLayout:
    """B sequences of L tokens stored as `(B, L, C)`."""

    def __init__(self, batch_size: int, length: int):
        self.batch_size = batch_size
        self.length = length

    def broadcast(self, per_sample: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, 1, C), broadcastable against the tokens."""
        return per_sample[:, None, :]

    def self_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend
    ) -> torch.Tensor:
        """q, k, v: (B, L, H, D) -> (B, L, H, D)."""
        return dense_attention(q, k, v, backend)

    def cross_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend
    ) -> torch.Tensor:
        """q: (B, L, H, D); k, v: (B, M, H, D) -> (B, L, H, D)."""
        return dense_attention(q, k, v, backend)


class PackedLayout:
    """B sequences of ragged lengths packed row after row into `(N, C)` (the rows of a `SparseTensor`)."""

    def __init__(self, lengths: Sequence[int], batch_index: torch.Tensor):
        self.lengths = [int(n) for n in lengths]
        self.batch_index = batch_index  # (N,) int64
        self.batch_size = len(self.lengths)
        self._cu_seqlens: torch.Tensor | None = None

    @classmethod
    def from_sparse(cls, x: SparseTensor) -> PackedLayout:
        return cls(x.lengths, x.batch_index)

    def broadcast(self, per_sample: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (N, C) rows, or (1, C) when B == 1 (broadcasts without a gather)."""
        if self.batch_size == 1:
            return per_sample
        return per_sample[self.batch_index]

    def _cu(self, device: torch.device) -> torch.Tensor:
        if self._cu_seqlens is None or self._cu_seqlens.device != device:
            self._cu_seqlens = cumulative_lengths(self.lengths, device)
        return self._cu_seqlens

    def self_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend
    ) -> torch.Tensor:
        """q, k, v: (N, H, D) -> (N, H, D); each sample attends over its own rows."""
        cu = self._cu(q.device)
        return varlen_attention(q, k, v, self.lengths, self.lengths, backend, cu, cu)

    def cross_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend
    ) -> torch.Tensor:
        """q: (N, H, D); k, v: (B, M, H, D) dense context -> (N, H, D)."""
        batch, length = k.shape[:2]
        kv_lengths = [length] * batch
        cu_kv = torch.arange(batch + 1, dtype=torch.int32, device=q.device) * length
        return varlen_attention(
            q, k.flatten(0, 1), v.flatten(0, 1), self.lengths, kv_lengths, backend, self._cu(q.device), cu_kv
        )


TokenLayout = Union[DenseLayout, PackedLayout]
# Know3D hook: (x (B, L, C) or (N, C), layout) -> residual added to x between cross-attention and FFN.
ExtHook = Callable[[torch.Tensor, TokenLayout], torch.Tensor]


class ExtHookProvider(Protocol):
    """What a flow model needs from an extra conditioning (the Know3D `ExtCondition`)."""

    def check(self, model: FlowTransformer, batch_size: int) -> None: ...  # noqa: E704

    def hook(self, block_index: int) -> ExtHook | None: ...  # noqa: E704


# ------------------------------------------------------------------------------------------------ attention
@dataclass(frozen=True)
class AttentionContext:
    """What one cross-attention layer attends to, prepared once per conditioning and reusable across steps.

    Either `k`, `v`: (B, M, H, D) normalised keys and values, or `constant`: (C,) the layer's exact output for an
    all-zero context (every key is the normalised key bias, so attention is uniform and returns the value bias).
    """

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    constant: torch.Tensor | None = None

    @property
    def batch_size(self) -> int | None:
        return None if self.k is None else self.k.shape[0]


class SelfAttention(nn.Module):
    """Multi-head self-attention with per-head q/k RMS norm and optional 3-D RoPE.

    Parameters: `to_qkv (3C, C)` (channel index = s C + head D + d), `q_rms_norm.gamma`, `k_rms_norm.gamma` (H, D),
    `to_out (C, C)` (+ biases).
    """

    def __init__(self, channels: int, num_heads: int, qk_rms_norm: bool):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.attention_backend = AttentionBackend.auto
        self.to_qkv = nn.Linear(channels, 3 * channels)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.qk_rms_norm = qk_rms_norm
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, layout: TokenLayout, rope_phases: torch.Tensor | None) -> torch.Tensor:
        """x: (B, L, C) or (N, C); rope_phases: (L or N, D/2) complex or None -> same shape as x."""
        qkv = self.to_qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # (..., T, 3, H, D)
        q, k, v = qkv.unbind(-3)
        if self.qk_rms_norm:
            q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        if rope_phases is not None:
            q, k = apply_rope(q, rope_phases), apply_rope(k, rope_phases)
        out = layout.self_attention(q, k, v, self.attention_backend)
        return self.to_out(out.flatten(-2))


class CrossAttention(nn.Module):
    """Multi-head attention from tokens to a dense context `(B, M, Cc)`, q/k RMS norm, no RoPE.

    Parameters: `to_q (C, C)`, `to_kv (2C, Cc)`, `q_rms_norm.gamma`, `k_rms_norm.gamma` (H, D), `to_out (C, C)`.
    """

    def __init__(self, channels: int, context_channels: int, num_heads: int, qk_rms_norm: bool):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} is not divisible by num_heads {num_heads}")
        self.channels = channels
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.attention_backend = AttentionBackend.auto
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(context_channels, 2 * channels)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.qk_rms_norm = qk_rms_norm
        self.to_out = nn.Linear(channels, channels)

    def prepare(self, context: torch.Tensor) -> AttentionContext:
        """context: (B, M, Cc) -> normalised keys and values (B, M, H, D) in the layer's weight dtype."""
        kv = self.to_kv(context.to(self.to_kv.weight.dtype)).unflatten(-1, (2, self.num_heads, self.head_dim))
        k, v = kv.unbind(-3)
        if self.qk_rms_norm:
            k = self.k_rms_norm(k)
        return AttentionContext(k=k, v=v)

    def prepare_null(self) -> AttentionContext:
        """The exact output for an all-zero context: `to_out(value bias)`, the same for every token."""
        value_bias = self.to_kv.bias[self.channels :]
        return AttentionContext(constant=self.to_out(value_bias))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | AttentionContext, layout: TokenLayout
    ) -> torch.Tensor:
        """x: (B, L, C) or (N, C); context: (B, M, Cc) or a prepared `AttentionContext` -> same shape as x."""
        if isinstance(context, torch.Tensor):
            context = self.prepare(context)
        if context.constant is not None:
            return context.constant.to(x.dtype).expand_as(x)
        q = self.to_q(x).unflatten(-1, (self.num_heads, self.head_dim))
        if self.qk_rms_norm:
            q = self.q_rms_norm(q)
        out = layout.cross_attention(q, context.k.to(q.dtype), context.v.to(q.dtype), self.attention_backend)
        return self.to_out(out.flatten(-2))


class FeedForward(nn.Module):
    """Linear(C -> hidden) -> GELU (tanh) -> Linear(hidden -> C); keys `mlp.0`, `mlp.2`."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


# ---------------------------------------------------------------------------------------------------- block
class ModulatedTransformerCrossBlock(nn.Module):
    """adaLN-modulated self-attention, un-modulated image cross-attention, modulated FFN (dense or packed tokens).

    Args:
        channels: C.
        context_channels: Cc of the cross-attention context (DINOv3: 1024).
        num_heads: H (head dim C / H).
        mlp_ratio: FFN hidden = int(C * mlp_ratio).
        share_mod: take the modulation from the model's shared adaLN (+ own `modulation (6C,)`); else own
            `adaLN_modulation.1 (6C, C)`.
        qk_rms_norm: RMS-normalise self-attention q/k.
        qk_rms_norm_cross: RMS-normalise cross-attention q/k.
    """

    def __init__(
        self,
        channels: int,
        context_channels: int,
        num_heads: int,
        mlp_ratio: float,
        share_mod: bool,
        qk_rms_norm: bool,
        qk_rms_norm_cross: bool,
    ):
        super().__init__()
        self.share_mod = share_mod
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(channels, num_heads, qk_rms_norm)
        self.cross_attn = CrossAttention(channels, context_channels, num_heads, qk_rms_norm_cross)
        self.mlp = FeedForward(channels, int(channels * mlp_ratio))
        if share_mod:
            self.modulation = nn.Parameter(torch.randn(6 * channels) / channels**0.5)
        else:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def forward(
        self,
        x: torch.Tensor,
        mod: torch.Tensor,
        context: torch.Tensor | AttentionContext,
        layout: TokenLayout,
        rope_phases: torch.Tensor | None = None,
        ext: ExtHook | None = None,
    ) -> torch.Tensor:
        """One block.

        Args:
            x: (B, L, C) dense or (N, C) packed tokens.
            mod: (B, 6C) shared adaLN output (share_mod) or (B, C) timestep embedding.
            context: (B, M, Cc) image tokens or the prepared `AttentionContext`.
            layout: how the rows of x map to batch items.
            rope_phases: (L or N, D/2) complex64, or None for no RoPE.
            ext: optional residual hook applied after the cross-attention.

        Returns:
            Same shape and dtype as x.
        """
        if self.share_mod:
            mod = (self.modulation + mod).to(mod.dtype)
        else:
            mod = self.adaLN_modulation(mod)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)  # each (B, C)
        b = layout.broadcast

        h = self.norm1(x) * (1 + b(scale_msa)) + b(shift_msa)
        x = x + self.self_attn(h, layout, rope_phases) * b(gate_msa)
        x = x + self.cross_attn(self.norm2(x), context, layout)
        if ext is not None:
            x = x + ext(x, layout)
        h = self.norm3(x) * (1 + b(scale_mlp)) + b(shift_mlp)
        return x + self.mlp(h) * b(gate_mlp)


# ---------------------------------------------------------------------------------------------------- trunk
@dataclass(frozen=True)
class CrossContext:
    """Every block's prepared cross-attention context for one conditioning, reusable across sampler steps.

    `batch_size` is None for the null context (all-zero image tokens), which fits any batch.
    """

    blocks: tuple[AttentionContext, ...]
    batch_size: int | None

    @property
    def is_null(self) -> bool:
        return self.batch_size is None


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if value not in _DTYPE_NAMES:
        raise CheckpointError(f"dtype={value!r} is not supported; expected one of {sorted(_DTYPE_NAMES)}")
    return _DTYPE_NAMES[value]


def linears_in_dtype(model: nn.Module, blocks: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The reference mixed-precision recipe: every parameter of `model` in fp32, then the `nn.Linear`s inside
    `blocks` in `dtype`. Returns `model`."""
    for param in model.parameters():
        param.data = param.data.float()
    for module in blocks.modules():
        if isinstance(module, nn.Linear):
            module.to(dtype)
    return model


class FlowTransformer(nn.Module):
    """What the sparse-structure and structured-latent flow models share: timestep embedding, shared adaLN,
    input/output projections, the block stack, the precision policy and the cross-attention context cache.

    Subclasses own the token layout and RoPE coordinates and write their `forward` with `_embed_time`,
    `_context`, `_run_blocks` and `_output`. Argument meanings follow the released checkpoint json.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        model_channels: int,
        cond_channels: int,
        num_blocks: int,
        num_heads: int,
        mlp_ratio: float,
        pe_mode: str,
        rope_freq: tuple[float, float],
        share_mod: bool,
        initialization: str,
        qk_rms_norm: bool,
        qk_rms_norm_cross: bool,
        dtype: str | torch.dtype,
    ):
        super().__init__()
        if pe_mode != "rope":
            raise CheckpointError(f"pe_mode={pe_mode!r} is not supported (the released TRELLIS.2 flows use 'rope')")
        if initialization not in ("vanilla", "scaled"):
            raise CheckpointError(f"initialization={initialization!r}; expected 'vanilla' or 'scaled'")
        if model_channels % num_heads:
            raise CheckpointError(f"model_channels={model_channels} is not divisible by num_heads={num_heads}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.model_channels = model_channels
        self.cond_channels = cond_channels
        self.num_blocks = num_blocks
        self.num_heads = num_heads
        self.head_dim = model_channels // num_heads
        self.mlp_ratio = mlp_ratio
        self.pe_mode = pe_mode
        self.rope_freq = (float(rope_freq[0]), float(rope_freq[1]))
        self.share_mod = share_mod
        self.initialization = initialization
        self.reference_dtype = parse_dtype(dtype)  # block dtype of the reference mixed precision (json `dtype`)

        self.t_embedder = TimestepEmbedder(model_channels)
        if share_mod:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(model_channels, 6 * model_channels))
        self.input_layer = nn.Linear(in_channels, model_channels)
        self.blocks = nn.ModuleList(
            ModulatedTransformerCrossBlock(
                model_channels, cond_channels, num_heads, mlp_ratio, share_mod, qk_rms_norm, qk_rms_norm_cross
            )
            for _ in range(num_blocks)
        )
        self.out_layer = nn.Linear(model_channels, out_channels)
        self.initialize_weights()

    # ------------------------------------------------------------------------------------ set-up
    @torch.no_grad()
    def initialize_weights(self) -> None:
        """Xavier Linears, zero biases, N(0, 0.02) timestep MLP, adaLN-Zero (zero adaLN output, zero `out_layer`).

        `scaled` additionally shrinks the residual output projections by 1/sqrt(2 num_blocks). Released weights
        overwrite all of this; it only matters for training from scratch.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        adaln = [self.adaLN_modulation[1]] if self.share_mod else [blk.adaLN_modulation[1] for blk in self.blocks]
        for layer in adaln:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.initialization == "scaled":
            factor = 1.0 / math.sqrt(2 * max(self.num_blocks, 1))
            for blk in self.blocks:
                for layer in (blk.self_attn.to_out, blk.cross_attn.to_out, blk.mlp.mlp[2]):
                    layer.weight.mul_(factor)
        nn.init.zeros_(self.out_layer.weight)
        nn.init.zeros_(self.out_layer.bias)

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype the blocks run in (that of their Linear weights)."""
        if not len(self.blocks):
            return self.input_layer.weight.dtype
        return self.blocks[0].self_attn.to_qkv.weight.dtype

    def apply_precision_policy(self, dtype: torch.dtype) -> FlowTransformer:
        """The reference mixed precision: `nn.Linear` weights and biases inside `blocks` in `dtype`, every other
        parameter (timestep MLP, shared adaLN, input/output layers, `modulation`, norm affines, RMS gammas) in fp32.
        `apply_precision_policy(torch.float32)` makes everything fp32. Returns self."""
        if dtype == torch.float16:
            logger.warning("fp16 TRELLIS.2 transformers overflow in attention; bfloat16 is the reference dtype")
        return linears_in_dtype(self, self.blocks, dtype)

    def set_attention_backend(self, backend: AttentionBackend) -> None:
        """Attention implementation of every block (`auto`, `sdpa`, `flash_attn`)."""
        set_attention_backend(self, backend)

    # ------------------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def prepare_context(self, cond: torch.Tensor, null_shortcut: bool = True) -> CrossContext:
        """Per-block cross-attention keys/values of `cond`, to reuse across sampler steps.

        Args:
            cond: (B, M, Cc) image tokens.
            null_shortcut: when every token is exactly zero (the CFG negative), store each block's constant
                output instead of keys/values (exact: uniform attention over identical values).

        Returns:
            `CrossContext` to pass as `cond` to `forward`.
        """
        self._check_cond(cond)
        if null_shortcut and not bool(cond.any()):
            return self.null_context()
        cond = cond.to(self.compute_dtype)
        return CrossContext(tuple(blk.cross_attn.prepare(cond) for blk in self.blocks), cond.shape[0])

    @torch.no_grad()
    def null_context(self) -> CrossContext:
        """The prepared context of all-zero image tokens (any batch size and token count)."""
        return CrossContext(tuple(blk.cross_attn.prepare_null() for blk in self.blocks), None)

    def _check_cond(self, cond: torch.Tensor) -> None:
        if cond.ndim != 3 or cond.shape[-1] != self.cond_channels:
            raise ValueError(f"cond must be (B, L, {self.cond_channels}), got {tuple(cond.shape)}")

    def _context(
        self, cond: torch.Tensor | CrossContext, batch_size: int
    ) -> tuple[torch.Tensor | AttentionContext, ...]:
        """Per-block context: the raw (B, M, Cc) tokens in compute dtype, or the prepared ones."""
        if isinstance(cond, CrossContext):
            if len(cond.blocks) != self.num_blocks:
                raise ValueError(f"context prepared for {len(cond.blocks)} blocks, model has {self.num_blocks}")
            if cond.batch_size is not None and cond.batch_size != batch_size:
                raise ValueError(f"context has batch {cond.batch_size}, input has batch {batch_size}")
            return cond.blocks
        self._check_cond(cond)
        if cond.shape[0] != batch_size:
            raise ValueError(f"cond has batch {cond.shape[0]}, input has batch {batch_size}")
        cond = cond.to(self.compute_dtype)
        return (cond,) * self.num_blocks

    # ----------------------------------------------------------------------------------- forward
    def _embed_time(self, t: torch.Tensor, batch_size: int) -> torch.Tensor:
        """t: (B,) or scalar model time -> (B, 6C) shared modulation (or (B, C) embedding) in compute dtype."""
        t = t.reshape(-1).expand(batch_size) if t.numel() == 1 else t
        if t.shape != (batch_size,):
            raise ValueError(f"t must be ({batch_size},), got {tuple(t.shape)}")
        emb = self.t_embedder(t)
        if self.share_mod:
            emb = self.adaLN_modulation(emb)
        return emb.to(self.compute_dtype)

    def _run_blocks(
        self,
        h: torch.Tensor,
        mod: torch.Tensor,
        contexts: Sequence[torch.Tensor | AttentionContext],
        layout: TokenLayout,
        rope_phases: torch.Tensor | None,
        ext: ExtHookProvider | None,
    ) -> torch.Tensor:
        if ext is not None:
            ext.check(self, layout.batch_size)
        for index, (block, context) in enumerate(zip(self.blocks, contexts)):
            hook = ext.hook(index) if ext is not None else None
            h = block(h, mod, context, layout, rope_phases, hook)
        return h

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        """Final parameter-free LN (eps 1e-5) and `out_layer`, in the output layer's dtype (fp32)."""
        h = h.to(self.out_layer.weight.dtype)
        h = F.layer_norm(h.float(), h.shape[-1:]).to(h.dtype)
        return self.out_layer(h)

    def _input(self, feats: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., C) through the (fp32) input layer, then cast to the compute dtype."""
        if feats.shape[-1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {feats.shape[-1]}")
        return self.input_layer(feats.to(self.input_layer.weight.dtype)).to(self.compute_dtype)


__all__ = [
    "AttentionContext",
    "CrossAttention",
    "CrossContext",
    "DenseLayout",
    "ExtHook",
    "ExtHookProvider",
    "FeedForward",
    "FlowTransformer",
    "ModulatedTransformerCrossBlock",
    "PackedLayout",
    "SelfAttention",
    "TokenLayout",
]
