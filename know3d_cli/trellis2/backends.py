"""The compute choices a caller of the library makes: attention kernel, sparse-convolution kernel, offload policy.

Only the choices live here, without torch, so that the app's configuration schema can use them as types and
`know3d config show` or a config error answers without loading torch; the kernels and the residency policy that
act on them are in `nn.attention`, `sparse.conv` and `residency` (which re-export these names).
"""

from __future__ import annotations

from ..choices import Choice


class AttentionBackend(Choice):
    """Attention implementations (config `runtime.attention`). `auto` = `flash_attn` when importable and the input is
    fp16/bf16 on CUDA, else `sdpa`."""

    auto = "auto"
    sdpa = "sdpa"
    flash_attn = "flash_attn"


class ConvBackend(Choice):
    """Sparse convolution implementations (config `runtime.sparse_conv`). `auto` picks the first usable one of
    `sparse.conv._AUTO_ORDER` for the input."""

    auto = "auto"
    torch = "torch"


class Offload(Choice):
    """Where networks wait between the stages that use them (config `runtime.offload`)."""

    sequential = "sequential"  # on the CPU; only the running stage's networks on the GPU (CUDA only)
    none = "none"  # on the compute device, all the time


__all__ = ["AttentionBackend", "ConvBackend", "Offload"]
