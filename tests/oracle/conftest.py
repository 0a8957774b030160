"""The upstream TRELLIS.2 model code (`trellis-3d-python`, MIT) as a test-only oracle, on the CPU.

Its CUDA-only ops are routed to reference ops here: dense attention to torch SDPA (its own `sdpa` backend), sparse
varlen attention to a per-sample SDPA loop, the submanifold convolution to our dense-verified torch convolution.
Nothing in `know3d_cli` imports the oracle. Without the package the tests skip: install it with
`pip install --no-deps trellis-3d-python==0.1.30`.
"""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch
import torch.nn.functional as F

os.environ["ATTN_BACKEND"] = "sdpa"  # upstream dense attention through torch SDPA (read at its import)
os.environ["SPARSE_CONV_BACKEND"] = "flex_gemm"  # replaced below by `ReferenceConvBackend`
os.environ["SPARSE_ATTN_BACKEND"] = "flash_attn"  # replaced below by `ReferenceFlashAttn`

pytest.importorskip("trellis.models", reason="the oracle needs `pip install --no-deps trellis-3d-python==0.1.30`")


class _Unavailable(types.ModuleType):
    """Stands in for a CUDA extension upstream imports at module level but these tests never call."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"{self.__name__}.{name} is CUDA-only and not available in the oracle tests")

        return unavailable


def _import_with_stubs(module: str, attempts: int = 20) -> None:
    """Import an upstream module, stubbing each missing third-party CUDA extension it imports."""
    import importlib

    for _ in range(attempts):
        try:
            importlib.import_module(module)
            return
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if not missing or missing.startswith("trellis"):
                raise
            parts = missing.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name not in sys.modules:
                    sys.modules[name] = _Unavailable(name)
                    if i > 1:
                        setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], sys.modules[name])
    raise ImportError(f"could not import {module} with stubs")


for _module in ("trellis.models.sparse_structure_flow", "trellis.models.sparse_structure_vae",
                "trellis.models.structured_latent_flow", "trellis.models.sc_vaes.sparse_unet_vae",
                "trellis.models.sc_vaes.fdg_vae"):
    _import_with_stubs(_module)

from know3d_cli.trellis2.sparse.conv_torch import submanifold_conv3d  # noqa: E402
from know3d_cli.trellis2.sparse.neighbors import build_neighbor_map  # noqa: E402


def _per_sample(q, k, v, cu_q, cu_k):
    """Varlen attention as a loop of per-sample SDPA: q (Tq, H, C), k/v (Tk, H, C) -> (Tq, H, C)."""
    out = torch.empty(q.shape[0], q.shape[1], v.shape[2], dtype=q.dtype)
    for i in range(len(cu_q) - 1):
        qs, qe, ks, ke = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
        att = F.scaled_dot_product_attention(q[qs:qe].transpose(0, 1), k[ks:ke].transpose(0, 1),
                                             v[ks:ke].transpose(0, 1))
        out[qs:qe] = att.transpose(0, 1)
    return out


class ReferenceFlashAttn(types.ModuleType):
    """The three varlen entry points upstream calls, on the CPU."""

    def __init__(self):
        super().__init__("flash_attn")

    @staticmethod
    def flash_attn_varlen_qkvpacked_func(qkv, cu, max_len):
        q, k, v = qkv.unbind(dim=1)
        return _per_sample(q, k, v, cu, cu)

    @staticmethod
    def flash_attn_varlen_kvpacked_func(q, kv, cu_q, cu_k, max_q, max_k):
        k, v = kv.unbind(dim=1)
        return _per_sample(q, k, v, cu_q, cu_k)

    @staticmethod
    def flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k):
        return _per_sample(q, k, v, cu_q, cu_k)


class ReferenceConvBackend:
    """Upstream's `flex_gemm` conv backend API (weight `(Co, 3, 3, 3, Ci)`) on our torch submanifold conv."""

    @staticmethod
    def sparse_conv3d_init(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, padding=None,
                           bias=True, indice_key=None):
        assert kernel_size == 3 and stride == 1 and dilation == 1 and padding is None
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = torch.nn.Parameter(torch.empty(out_channels, 3, 3, 3, in_channels))
        self.bias = torch.nn.Parameter(torch.empty(out_channels)) if bias else None

    @staticmethod
    def sparse_conv3d_forward(self, x):
        neighbors = build_neighbor_map(x.coords)
        return x.replace(submanifold_conv3d(x.feats, neighbors, self.weight, self.bias))


@pytest.fixture(scope="module", autouse=True)
def reference_ops():
    """Route upstream's CUDA-only sparse conv and varlen attention to the reference ops."""
    from trellis.modules.sparse.conv import conv

    saved_backends = dict(conv._backends)
    saved_flash = sys.modules.get("flash_attn")
    conv._backends["flex_gemm"] = ReferenceConvBackend
    # upstream does `import flash_attn` inside its attention function; our package only looks for flash_attn on
    # CUDA inputs, and these tests run on the CPU, so the stand-in never reaches our code
    sys.modules["flash_attn"] = ReferenceFlashAttn()
    yield
    conv._backends.clear()
    conv._backends.update(saved_backends)
    if saved_flash is None:
        sys.modules.pop("flash_attn", None)
    else:
        sys.modules["flash_attn"] = saved_flash
