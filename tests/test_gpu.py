"""Checks that need a CUDA device (skipped without one): the chain in reduced precision and per-stage residency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from know3d_cli.trellis2 import Offload, PipelineType, Precision, Trellis2Pipeline, Trellis2Settings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def front() -> Image.Image:
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[8:56, 12:52] = np.random.default_rng(0).integers(60, 255, size=(48, 40, 3))
    return Image.fromarray(arr)


def pipeline(tiny_root, precision: Precision, offload: Offload, pipeline_type: str = "512",
             device: str = "cuda") -> Trellis2Pipeline:
    return Trellis2Pipeline.from_pretrained(
        tiny_root / "trellis2", dinov3_dir=tiny_root / "dinov3", ss_decoder_dir=tiny_root / "trellis_image_large",
        settings=Trellis2Settings(pipeline_type=PipelineType(pipeline_type)), device=device, precision=precision,
        offload=offload,
    )


def test_sequential_offload_parks_every_network_on_the_cpu(tiny_root):
    pipe = pipeline(tiny_root, Precision.reference, Offload.sequential)
    out = pipe(front(), seed=0)
    assert out.asset.textured and out.forwards == {"ss": 22, "shape": 21, "tex": 12}
    assert len(pipe.loaded_networks) == 6
    for model in [*pipe.loaded_networks.values(), pipe.image_encoder.model]:
        assert all(p.device.type == "cpu" for p in model.parameters())


def test_cuda_fp32_matches_cpu_stage_one(tiny_root):
    cpu = pipeline(tiny_root, Precision.fp32, Offload.none, pipeline_type="ss", device="cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    gpu = pipeline(tiny_root, Precision.fp32, Offload.none, pipeline_type="ss")
    a = cpu(front(), seed=3).asset
    b = gpu(front(), seed=3).asset
    assert a.faces.shape == b.faces.shape
    torch.testing.assert_close(a.vertices, b.vertices, atol=1e-4, rtol=0)
