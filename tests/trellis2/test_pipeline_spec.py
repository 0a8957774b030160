"""`pipeline.json` parsing: released values, checkpoint paths, and errors naming the file and the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from know3d_cli.errors import CheckpointError, ModelMissingError
from know3d_cli.tiny.trellis2 import RELEASED_PIPELINE_ARGS, released_models_map
from know3d_cli.trellis2.pipeline_spec import MODEL_KEYS, read_pipeline_json


def write(folder: Path, args: dict | None = None, name: str = "Trellis2ImageTo3DPipeline") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    args = args if args is not None else {"models": released_models_map(), **copy.deepcopy(RELEASED_PIPELINE_ARGS)}
    (folder / "pipeline.json").write_text(json.dumps({"name": name, "args": args}))
    return folder


def released_args() -> dict:
    return {"models": released_models_map(), **copy.deepcopy(RELEASED_PIPELINE_ARGS)}


def test_released_values(tmp_path):
    spec = read_pipeline_json(write(tmp_path / "t2"))
    ss, shape, tex = spec.sparse_structure_sampler, spec.shape_slat_sampler, spec.tex_slat_sampler
    assert (ss.steps, shape.steps, tex.steps) == (12, 12, 12)
    assert (ss.guidance_strength, shape.guidance_strength, tex.guidance_strength) == (7.5, 7.5, 1.0)
    assert (ss.guidance_rescale, shape.guidance_rescale, tex.guidance_rescale) == (0.7, 0.5, 0.0)
    assert (ss.rescale_t, shape.rescale_t, tex.rescale_t) == (5.0, 3.0, 3.0)
    assert ss.guidance_interval == (0.6, 1.0) and tex.guidance_interval == (0.6, 0.9)
    assert ss.sigma_min == 1e-5
    assert spec.shape_slat_normalization.channels == spec.tex_slat_normalization.channels == 32
    assert spec.default_pipeline_type == "1024_cascade"
    assert spec.image_cond_model == "facebook/dinov3-vitl16-pretrain-lvd1689m"


def test_checkpoint_paths(tmp_path):
    trellis, large = write(tmp_path / "t2"), tmp_path / "large"
    spec = read_pipeline_json(trellis)
    for role in MODEL_KEYS:
        if role != "sparse_structure_decoder":
            assert spec.checkpoint(role, trellis, large).parent == trellis / "ckpts"
    ss = spec.checkpoint("sparse_structure_decoder", trellis, large)
    assert ss == large / "ckpts" / "ss_dec_conv3d_16l8_fp16"
    with pytest.raises(ModelMissingError, match="models.ss_decoder"):
        spec.checkpoint("sparse_structure_decoder", trellis, None)
    local = trellis / "microsoft" / "TRELLIS-image-large" / "ckpts"  # a copy inside the TRELLIS.2 folder wins
    local.mkdir(parents=True)
    (local / "ss_dec_conv3d_16l8_fp16.json").write_text("{}")
    assert spec.checkpoint("sparse_structure_decoder", trellis, None) == local / "ss_dec_conv3d_16l8_fp16"
    with pytest.raises(CheckpointError, match="no 'missing_role'"):
        spec.checkpoint("missing_role", trellis, large)


def _broken(path: list, value) -> dict:
    args = released_args()
    node = args
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return args


@pytest.mark.parametrize(
    "path,value,needle",
    [
        (["models", "shape_slat_decoder"], KeyError, "args.models.shape_slat_decoder"),
        (["models", "tex_slat_decoder"], "", "args.models.tex_slat_decoder"),
        (["sparse_structure_sampler", "params", "steps"], 0, "args.sparse_structure_sampler.params.steps"),
        (["shape_slat_sampler", "params", "steps"], 2.5, "args.shape_slat_sampler.params.steps"),
        (["tex_slat_sampler", "params", "guidance_interval"], [0.9, 0.1], "guidance_interval"),
        (["tex_slat_sampler", "params", "extra"], 1, "unknown key"),
        (["tex_slat_sampler", "name"], "OtherSampler", "args.tex_slat_sampler.name"),
        (["shape_slat_normalization", "std"], [0.0] * 32, "args.shape_slat_normalization.std"),
        (["tex_slat_normalization", "mean"], [1.0, 2.0], "args.tex_slat_normalization.std"),
        (["default_pipeline_type"], "2048", "default_pipeline_type"),
        (["image_cond_model"], "dinov3", "args.image_cond_model"),
    ],
)
def test_malformed_pipeline_json_names_the_key(tmp_path, path, value, needle):
    folder = write(tmp_path / "t2", _broken(path, value))
    with pytest.raises(CheckpointError, match=needle.replace(".", r"\.")) as info:
        read_pipeline_json(folder)
    assert "pipeline.json" in str(info.value) and "\n" not in str(info.value)


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ModelMissingError, match="TRELLIS.2 model folder"):
        read_pipeline_json(tmp_path)
    (tmp_path / "pipeline.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_pipeline_json(tmp_path)
