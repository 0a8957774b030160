"""Checks that need a CUDA device (skipped without one): the chain in reduced precision and per-stage residency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from know3d_cli.config import RuntimeConfig, RuntimeDtype
from know3d_cli.runtime import resolve_runtime
from know3d_cli.trellis2 import AdapterSettings, Offload, PipelineType, Trellis2Generator, Trellis2Settings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def front() -> Image.Image:
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[8:56, 12:52] = np.random.default_rng(0).integers(60, 255, size=(48, 40, 3))
    return Image.fromarray(arr)


def generator(tiny_root, dtype: str, offload: str, pipeline_type: str = "512") -> Trellis2Generator:
    runtime = resolve_runtime(RuntimeConfig(device="cuda", dtype=RuntimeDtype(dtype), offload=Offload(offload)))
    return Trellis2Generator(tiny_root / "trellis2", tiny_root / "trellis_image_large", tiny_root / "dinov3",
                             Trellis2Settings(pipeline_type=PipelineType(pipeline_type)), AdapterSettings(), None, runtime)


def test_sequential_offload_parks_every_network_on_the_cpu(tiny_root):
    gen = generator(tiny_root, "bfloat16", "sequential")
    asset, stats = gen.generate(front(), seed=0)
    assert asset.textured and stats.forwards == {"ss": 22, "shape": 21, "tex": 12}
    for model in gen.models._cache.values():
        assert all(p.device.type == "cpu" for p in model.parameters())


def test_cuda_fp32_matches_cpu_stage_one(tiny_root):
    cpu = Trellis2Generator(tiny_root / "trellis2", tiny_root / "trellis_image_large", tiny_root / "dinov3",
                            Trellis2Settings(pipeline_type=PipelineType.ss), AdapterSettings(), None,
                            resolve_runtime(RuntimeConfig(device="cpu", dtype=RuntimeDtype.float32)))
    torch.backends.cuda.matmul.allow_tf32 = False
    gpu = generator(tiny_root, "float32", "none", pipeline_type="ss")
    a, _ = cpu.generate(front(), seed=3)
    b, _ = gpu.generate(front(), seed=3)
    assert a.faces.shape == b.faces.shape
    torch.testing.assert_close(a.vertices, b.vertices, atol=1e-4, rtol=0)
