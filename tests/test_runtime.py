"""`Runtime`: device, dtype and backends decided once from `runtime.*`; peak memory."""

from __future__ import annotations

import logging
import resource

import pytest
import torch

from know3d_cli.config import RuntimeConfig, RuntimeDtype
from know3d_cli.errors import BackendUnavailable
from know3d_cli.runtime import peak_memory, reset_peak_memory, resolve_runtime
from know3d_cli.trellis2 import AttentionBackend, ConvBackend, Offload, Precision


def test_auto_is_the_cpu_in_fp32_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runtime = resolve_runtime(RuntimeConfig(offload=Offload.none, attention=AttentionBackend.sdpa,
                                            sparse_conv=ConvBackend.torch, compile=True))
    assert runtime.device == torch.device("cpu") and runtime.dtype == torch.float32
    assert not runtime.is_cuda and runtime.exact and runtime.trellis2_precision is Precision.fp32
    assert (runtime.offload, runtime.attention, runtime.sparse_conv, runtime.compile) == (
        Offload.none, AttentionBackend.sdpa, ConvBackend.torch, True)


@pytest.mark.parametrize("dtype, torch_dtype", [(RuntimeDtype.bfloat16, torch.bfloat16),
                                                (RuntimeDtype.float16, torch.float16)])
def test_a_reduced_dtype_uses_the_reference_precision_and_warns_on_a_cpu(caplog, dtype, torch_dtype):
    with caplog.at_level(logging.WARNING, logger="know3d_cli.runtime"):
        runtime = resolve_runtime(RuntimeConfig(device="cpu", dtype=dtype))
    assert runtime.dtype == torch_dtype and not runtime.exact
    assert runtime.trellis2_precision is Precision.reference
    assert "slow and inexact" in caplog.text


def test_auto_dtype_on_cuda_is_bfloat16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    runtime = resolve_runtime(RuntimeConfig(device="cuda:1"))
    assert runtime.device == torch.device("cuda:1") and runtime.is_cuda and runtime.dtype == torch.bfloat16


@pytest.mark.parametrize("device, available, count, words", [
    ("cuda", False, 0, "no CUDA GPU"),
    ("cuda:3", True, 2, "only 2 CUDA device(s)"),
])
def test_an_unusable_cuda_request_is_exit_4_with_the_fix(monkeypatch, device, available, count, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(BackendUnavailable, match="runtime.device") as info:
        resolve_runtime(RuntimeConfig(device=device))
    assert words in str(info.value) and info.value.exit_code == 4


def test_peak_memory_on_a_cpu_is_the_process_peak_rss():
    runtime = resolve_runtime(RuntimeConfig(device="cpu"))
    reset_peak_memory(runtime)  # nothing to reset on a CPU
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = peak_memory(runtime)
    assert peak["kind"] == "peak_rss" and peak["bytes"] >= before
