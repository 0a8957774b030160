"""`Trellis2Pipeline` on the tiny TRELLIS.2 set: stages, pipeline types, seeds, adapter, multiview, inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from know3d_cli.errors import ConfigError, ModelMissingError
from know3d_cli.tiny.editor import TINY_EDITOR_HIDDEN
from know3d_cli.tiny.trellis2 import TINY_MODEL_CHANNELS, TINY_NUM_BLOCKS, TINY_NUM_HEADS
from know3d_cli.trellis2 import (
    AdapterSettings,
    AdapterStage,
    PipelineType,
    SamplerOverrides,
    Trellis2Pipeline,
    Trellis2Settings,
)
from know3d_cli.trellis2.checkpoint import save_adapter
from know3d_cli.trellis2.models import Know3dAdapter

pytestmark = pytest.mark.usefixtures("one_thread")


def front(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[8:56, 12:52] = rng.integers(60, 255, size=(48, 40, 3))
    return Image.fromarray(arr)


# 4 sampler steps instead of the released 12 where a test does not count the released forwards (the 512 test does)
FEW_STEPS = SamplerOverrides(steps=4)


def pipeline(tiny_root: Path, pipeline_type: str = "ss", adapter_dir: Path | None = None, settings=None,
             **adapter) -> Trellis2Pipeline:
    return Trellis2Pipeline.from_pretrained(
        tiny_root / "trellis2",
        dinov3_dir=tiny_root / "dinov3",
        ss_decoder_dir=tiny_root / "trellis_image_large",
        adapter_dir=adapter_dir,
        settings=settings or Trellis2Settings(pipeline_type=PipelineType(pipeline_type), ss=FEW_STEPS),
        adapter=AdapterSettings(**adapter),
    )


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, 4, TINY_EDITOR_HIDDEN, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ss_pipeline(tiny_root) -> Trellis2Pipeline:
    return pipeline(tiny_root)


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


class StageLog:
    """A stage hook that records the stages it is entered around."""

    def __init__(self):
        self.stages: list[str] = []

    def __call__(self, stage: str):
        self.stages.append(stage)
        return torch.no_grad()


def test_stage_one_surface_is_seeded_and_counts_forwards(ss_pipeline):
    log = StageLog()
    out = ss_pipeline(front(), seed=11, stage_hook=log)
    assert log.stages == ["condition", "ss", "mesh"]
    again = ss_pipeline(front(), seed=11)
    other = ss_pipeline(front(), seed=12)
    asset = out.asset
    assert asset.source_stage == "ss" and asset.resolution == out.resolution == 64 and not asset.textured
    assert asset.faces.shape[0] > 0 and out.pipeline_type is PipelineType.ss
    assert torch.equal(asset.vertices, again.asset.vertices)
    different = other.asset.vertices
    assert not (asset.vertices.shape == different.shape and torch.equal(asset.vertices, different))
    few = ss_pipeline.samplers.ss
    assert few.steps == 4 and out.forwards == {"ss": few.num_forwards()} == {"ss": 8}  # every step guided
    assert out.tokens["ss"] == 16**3 and out.total_forwards == 8


def test_sampler_overrides_apply(tiny_root):
    settings = Trellis2Settings(pipeline_type=PipelineType.ss, ss=SamplerOverrides(steps=3, guidance_strength=1.0))
    out = pipeline(tiny_root, settings=settings)(front(), seed=0)
    assert out.forwards == {"ss": 3}  # no CFG: one pass per step


def test_512_pipeline_is_textured_with_pbr_voxels_on_the_mesh(tiny_root):
    log = StageLog()
    released = Trellis2Settings(pipeline_type=PipelineType("512"))  # the released sampler settings
    out = pipeline(tiny_root, settings=released)(front(), seed=2, stage_hook=log)
    assert log.stages == ["condition", "ss", "shape", "tex", "decode"]
    asset = out.asset
    assert asset.source_stage == "shape" and asset.resolution == 512 and asset.textured
    assert asset.voxel_attrs.shape == (asset.voxel_coords.shape[0], 6) == (out.tokens["voxels"], 6)
    assert out.forwards == {"ss": 22, "shape": 21, "tex": 12}
    # the mesh lies inside the voxels it was extracted from: every vertex within the voxel cube, in [-0.5, 0.5]^3
    assert asset.vertices.abs().max() <= 0.5 + 1.5 / 512
    assert int(asset.faces.max()) < asset.vertices.shape[0]


def test_token_cap_lowers_1536_with_a_warning(tiny_root):
    settings = Trellis2Settings(pipeline_type=PipelineType["1536_cascade"], max_num_tokens=1, ss=FEW_STEPS,
                                shape=FEW_STEPS, tex=FEW_STEPS)
    out = pipeline(tiny_root, settings=settings)(front(), seed=0)
    assert out.resolution == out.asset.resolution == 1024  # lowered in steps of 128, never below 1024
    assert any("max_num_tokens" in w for w in out.warnings)
    assert set(out.forwards) == {"ss", "shape_lr", "shape_hr", "tex"}


def test_untrained_adapter_is_identical_and_trained_one_changes_geometry(tiny_root, ss_pipeline, zero_adapter):
    plain = ss_pipeline(front(), seed=4).asset
    zero = pipeline(tiny_root, adapter_dir=zero_adapter)(front(), editor_tokens=tokens(), seed=4)
    assert torch.equal(plain.vertices, zero.asset.vertices) and torch.equal(plain.faces, zero.asset.faces)
    assert zero.forwards == {"ss": 8}

    steered = pipeline(tiny_root, adapter_dir=tiny_root / "adapter")
    a = steered(front(), editor_tokens=tokens(0), seed=4).asset
    b = steered(front(), editor_tokens=tokens(1), seed=4).asset
    assert not (a.vertices.shape == b.vertices.shape and torch.equal(a.vertices, b.vertices))


def test_adapter_only_on_configured_stages_and_checked(tiny_root, ss_pipeline):
    shape_only = pipeline(tiny_root, adapter_dir=tiny_root / "adapter", stages=[AdapterStage.shape])
    plain = ss_pipeline(front(), seed=5).asset
    assert torch.equal(plain.vertices, shape_only(front(), editor_tokens=tokens(), seed=5).asset.vertices)  # ss only

    with pytest.raises(ConfigError, match="adapter.blocks"):
        pipeline(tiny_root, adapter_dir=tiny_root / "adapter", blocks=[0])(front(), editor_tokens=tokens())
    with pytest.raises(ConfigError, match="adapter.pool"):
        pipeline(tiny_root, adapter_dir=tiny_root / "adapter", pool=2)(front(), editor_tokens=tokens())


def test_missing_adapter_stage_is_model_missing(tiny_root, tmp_path):
    save_adapter(Know3dAdapter(ext_channels=TINY_EDITOR_HIDDEN, proj_channels=32, model_channels=TINY_MODEL_CHANNELS,
                               num_heads=TINY_NUM_HEADS, blocks=[0]), tmp_path, AdapterStage.shape)
    with pytest.raises(ModelMissingError, match="ss.json"):
        pipeline(tiny_root, adapter_dir=tmp_path)(front(), editor_tokens=tokens())


def test_multiview_averages_two_views(ss_pipeline):
    single = ss_pipeline(front(0), seed=6)
    double = ss_pipeline(front(0), back_view=front(1), seed=6)
    assert double.forwards["ss"] == single.forwards["ss"] + 4  # one extra conditional pass per step
    a, b = single.asset.vertices, double.asset.vertices
    assert not (a.shape == b.shape and torch.equal(a, b))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image": np.zeros((8, 8, 3))}, "`image` must be a PIL image"),
        ({"back_view": "back.png"}, "`back_view` must be a PIL image"),
        ({"editor_tokens": torch.zeros(1, 4, 4, TINY_EDITOR_HIDDEN)}, "no Know3D adapter"),
        ({"seed": 1.5}, "`seed` must be an integer"),
        ({"seed": 2**64}, "`seed` must be an integer"),
    ],
)
def test_check_inputs_names_the_argument(ss_pipeline, kwargs, message):
    args = {"image": front(), **kwargs}
    with pytest.raises(ValueError, match=message):
        ss_pipeline.check_inputs(**args)
    with pytest.raises(ValueError, match=message):
        ss_pipeline(**args)


def test_editor_tokens_must_be_one_token_grid(tiny_root):
    pipe = pipeline(tiny_root, adapter_dir=tiny_root / "adapter")
    with pytest.raises(ValueError, match=r"\(1, h, w, C\)"):
        pipe.check_inputs(front(), editor_tokens=torch.zeros(2, 4, 4, TINY_EDITOR_HIDDEN))
    with pytest.raises(ValueError, match=r"\(1, h, w, C\)"):
        pipe.check_inputs(front(), editor_tokens=torch.zeros(16, TINY_EDITOR_HIDDEN))
