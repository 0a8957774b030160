"""`Trellis2Generator` on the tiny TRELLIS.2 set: stages, pipeline types, seeds, adapter and multiview."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from know3d_cli.config import RuntimeConfig, RuntimeDtype
from know3d_cli.errors import ConfigError, ModelMissingError
from know3d_cli.runtime import resolve_runtime
from know3d_cli.tiny.editor import TINY_EDITOR_HIDDEN
from know3d_cli.tiny.trellis2 import (
    TINY_MODEL_CHANNELS,
    TINY_NUM_BLOCKS,
    TINY_NUM_HEADS,
)
from know3d_cli.trellis2 import AdapterSettings, AdapterStage, PipelineType, SamplerOverrides, Trellis2Generator
from know3d_cli.trellis2 import Trellis2Settings
from know3d_cli.trellis2.checkpoint import save_adapter
from know3d_cli.trellis2.models import Know3dAdapter

CPU = resolve_runtime(RuntimeConfig(device="cpu", dtype=RuntimeDtype.float32))


def front(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[8:56, 12:52] = rng.integers(60, 255, size=(48, 40, 3))
    return Image.fromarray(arr)


def generator(tiny_root: Path, pipeline_type: str = "ss", adapter_dir: Path | None = None, **adapter) -> Trellis2Generator:
    return Trellis2Generator(
        trellis_dir=tiny_root / "trellis2",
        ss_decoder_dir=tiny_root / "trellis_image_large",
        dinov3_dir=tiny_root / "dinov3",
        cfg=Trellis2Settings(pipeline_type=PipelineType(pipeline_type)),
        adapter_cfg=AdapterSettings(**adapter),
        adapter_dir=adapter_dir,
        runtime=CPU,
    )


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, 4, TINY_EDITOR_HIDDEN, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def zero_adapter(tmp_path_factory) -> Path:
    """A freshly initialised (untrained) adapter for every stage: zero out-projections."""
    directory = tmp_path_factory.mktemp("zero_adapter")
    for stage in AdapterStage:
        torch.manual_seed(1)
        adapter = Know3dAdapter(ext_channels=TINY_EDITOR_HIDDEN, proj_channels=32, model_channels=TINY_MODEL_CHANNELS,
                                num_heads=TINY_NUM_HEADS, blocks=range(TINY_NUM_BLOCKS))
        save_adapter(adapter, directory, stage)
    return directory


def test_stage_one_surface_is_seeded_and_counts_forwards(tiny_root):
    gen = generator(tiny_root)
    asset, stats = gen.generate(front(), seed=11)
    again, _ = gen.generate(front(), seed=11)
    other, _ = gen.generate(front(), seed=12)
    assert asset.source_stage == "ss" and asset.resolution == 64 and not asset.textured
    assert asset.faces.shape[0] > 0
    assert torch.equal(asset.vertices, again.vertices)
    assert not (asset.vertices.shape == other.vertices.shape and torch.equal(asset.vertices, other.vertices))
    assert stats.forwards == {"ss": 22} and stats.tokens["ss"] == 16**3


def test_sampler_overrides_apply(tiny_root):
    gen = generator(tiny_root)
    gen = Trellis2Generator(gen.models.trellis_dir, gen.models.ss_decoder_dir, tiny_root / "dinov3",
                            Trellis2Settings(pipeline_type=PipelineType.ss,
                                             ss=SamplerOverrides(steps=3, guidance_strength=1.0)),
                            AdapterSettings(), None, CPU)
    _, stats = gen.generate(front(), seed=0)
    assert stats.forwards == {"ss": 3}  # no CFG: one pass per step


def test_512_pipeline_is_textured_with_pbr_voxels_on_the_mesh(tiny_root):
    asset, stats = generator(tiny_root, "512").generate(front(), seed=2)
    assert asset.source_stage == "shape" and asset.resolution == 512 and asset.textured
    assert asset.voxel_attrs.shape == (asset.voxel_coords.shape[0], 6)
    assert stats.forwards == {"ss": 22, "shape": 21, "tex": 12}
    # the mesh lies inside the voxels it was extracted from: every vertex within the voxel cube, in [-0.5, 0.5]^3
    assert asset.vertices.abs().max() <= 0.5 + 1.5 / 512
    assert int(asset.faces.max()) < asset.vertices.shape[0]


def test_token_cap_lowers_1536_with_a_warning(tiny_root):
    gen = generator(tiny_root, "1536_cascade")
    gen.cfg = replace(gen.cfg, max_num_tokens=1)
    asset, stats = gen.generate(front(), seed=0)
    assert stats.resolution == asset.resolution == 1024  # lowered in steps of 128, never below 1024
    assert any("max_num_tokens" in w for w in stats.warnings)
    assert set(stats.forwards) == {"ss", "shape_lr", "shape_hr", "tex"}


def test_untrained_adapter_is_identical_and_trained_one_changes_geometry(tiny_root, zero_adapter):
    plain, _ = generator(tiny_root).generate(front(), seed=4)
    zero, stats = generator(tiny_root, adapter_dir=zero_adapter).generate(front(), ext_tokens=tokens(), seed=4)
    assert torch.equal(plain.vertices, zero.vertices) and torch.equal(plain.faces, zero.faces)
    assert stats.forwards == {"ss": 22}

    steered = generator(tiny_root, adapter_dir=tiny_root / "adapter")
    a, _ = steered.generate(front(), ext_tokens=tokens(0), seed=4)
    b, _ = steered.generate(front(), ext_tokens=tokens(1), seed=4)
    assert not (a.vertices.shape == b.vertices.shape and torch.equal(a.vertices, b.vertices))


def test_adapter_only_on_configured_stages_and_checked(tiny_root):
    gen = generator(tiny_root, adapter_dir=tiny_root / "adapter", stages=[AdapterStage.shape])
    plain, _ = generator(tiny_root).generate(front(), seed=5)
    shape_only, _ = gen.generate(front(), ext_tokens=tokens(), seed=5)
    assert torch.equal(plain.vertices, shape_only.vertices)  # pipeline_type=ss: no shape stage ran

    with pytest.raises(ConfigError, match="adapter.blocks"):
        generator(tiny_root, adapter_dir=tiny_root / "adapter", blocks=[0]).generate(front(), ext_tokens=tokens())
    with pytest.raises(ConfigError, match="adapter.pool"):
        generator(tiny_root, adapter_dir=tiny_root / "adapter", pool=2).generate(front(), ext_tokens=tokens())
    with pytest.raises(ConfigError, match="no Know3D adapter"):
        generator(tiny_root).generate(front(), ext_tokens=tokens())


def test_missing_adapter_stage_is_model_missing(tiny_root, tmp_path):
    save_adapter(Know3dAdapter(ext_channels=TINY_EDITOR_HIDDEN, proj_channels=32, model_channels=TINY_MODEL_CHANNELS,
                               num_heads=TINY_NUM_HEADS, blocks=[0]), tmp_path, AdapterStage.shape)
    with pytest.raises(ModelMissingError, match="ss.json"):
        generator(tiny_root, adapter_dir=tmp_path).generate(front(), ext_tokens=tokens())


def test_multiview_averages_two_views(tiny_root):
    gen = generator(tiny_root)
    single, one = gen.generate(front(0), seed=6)
    double, two = gen.generate(front(0), back_view=front(1), seed=6)
    assert two.forwards["ss"] == one.forwards["ss"] + 12  # one extra conditional pass per step
    assert not (single.vertices.shape == double.vertices.shape and torch.equal(single.vertices, double.vertices))
