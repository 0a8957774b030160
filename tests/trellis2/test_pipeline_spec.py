"""`pipeline.json` parsing: released values, checkpoint paths, and errors naming the file and the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from know3d_cli.errors import CheckpointError, ModelMissingError
from know3d_cli.tiny.trellis2 import RELEASED_PIPELINE_ARGS, released_models_map
from know3d_cli.trellis2.pipeline_spec import MODEL_KEYS, read_pipeline_json, resolve_checkpoint


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


# ------------------------------------------------------------------------ the tiny writer's pipeline.json
@pytest.fixture(scope="module")
def tiny_trellis(tiny_root):
    return tiny_root / "trellis2", tiny_root / "trellis_image_large"


def test_tiny_pipeline_json_has_the_released_sampler_values(tiny_trellis):
    trellis, _ = tiny_trellis
    spec = read_pipeline_json(trellis)
    samplers = (spec.sparse_structure_sampler, spec.shape_slat_sampler, spec.tex_slat_sampler)
    assert [s.steps for s in samplers] == [12, 12, 12]
    assert [s.guidance_strength for s in samplers] == [7.5, 7.5, 1.0]
    assert [s.guidance_rescale for s in samplers] == [0.7, 0.5, 0.0]
    assert [s.rescale_t for s in samplers] == [5.0, 3.0, 3.0]
    assert [s.guidance_interval for s in samplers] == [(0.6, 1.0), (0.6, 1.0), (0.6, 0.9)]
    assert [s.sigma_min for s in samplers] == [1e-5, 1e-5, 1e-5]
    for norm in (spec.shape_slat_normalization, spec.tex_slat_normalization):
        assert norm.channels == 32 and len(norm.std) == 32 and min(norm.std) > 0
    assert spec.shape_slat_normalization.mean[0] == 0.781296 and spec.tex_slat_normalization.std[-1] == 2.77519
    assert spec.default_pipeline_type == "1024_cascade"
    assert spec.image_cond_model == "facebook/dinov3-vitl16-pretrain-lvd1689m"
    assert spec.rembg_model == "briaai/RMBG-2.0"
    assert dict(spec.models) == released_models_map() and set(spec.models) == set(MODEL_KEYS)
    assert spec.source == trellis / "pipeline.json"


def test_tiny_roles_resolve_to_existing_checkpoints(tiny_trellis):
    trellis, large = tiny_trellis
    spec = read_pipeline_json(trellis)
    for role in MODEL_KEYS:
        stem = spec.checkpoint(role, trellis, large)
        assert Path(f"{stem}.json").is_file() and Path(f"{stem}.safetensors").is_file(), role
        expected_root = large if role == "sparse_structure_decoder" else trellis
        assert stem.parent == expected_root / "ckpts", role
    with pytest.raises(ModelMissingError, match="microsoft/TRELLIS-image-large") as info:
        spec.checkpoint("sparse_structure_decoder", trellis, None)
    assert "\n" not in str(info.value)
    # the other roles never need the TRELLIS-image-large folder
    assert spec.checkpoint("tex_slat_decoder", trellis, None) == trellis / "ckpts" / "tex_dec_next_dc_f16c32_fp16"


def test_resolve_checkpoint_rules(tmp_path):
    trellis, large = tmp_path / "t2", tmp_path / "large"
    assert resolve_checkpoint("ckpts/a", trellis, None) == trellis / "ckpts" / "a"
    assert resolve_checkpoint("/abs/ckpts/a", trellis, None) == Path("/abs/ckpts/a")
    assert resolve_checkpoint("microsoft/TRELLIS-image-large/ckpts/b", trellis, large) == large / "ckpts" / "b"
    # another repo prefix is not the SS decoder repo: stays relative to the TRELLIS.2 folder
    assert resolve_checkpoint("microsoft/Other/ckpts/b", trellis, None) == trellis / "microsoft/Other/ckpts/b"
    local = trellis / "microsoft" / "TRELLIS-image-large" / "ckpts"
    local.mkdir(parents=True)
    (local / "b.json").write_text("{}")
    assert resolve_checkpoint("microsoft/TRELLIS-image-large/ckpts/b", trellis, large) == local / "b"


def test_extra_roles_are_kept_and_the_name_is_only_a_warning(tmp_path, caplog):
    args = released_args()
    args["models"]["shape_slat_flow_model_1536"] = "ckpts/extra"
    spec = read_pipeline_json(write(tmp_path / "t2", args, name="OtherPipeline"))
    assert spec.models["shape_slat_flow_model_1536"] == "ckpts/extra"
    assert spec.checkpoint("shape_slat_flow_model_1536", tmp_path / "t2", None) == tmp_path / "t2" / "ckpts" / "extra"
    assert "OtherPipeline" in caplog.text
    args["models"]["bad_extra"] = 3
    with pytest.raises(CheckpointError, match=r"args\.models\.bad_extra"):
        read_pipeline_json(write(tmp_path / "t3", args))


@pytest.mark.parametrize(
    "path,value,needle",
    [
        (["models"], KeyError, "missing key args.models"),
        (["models"], ["ckpts/a"], "args.models must be an object"),
        (["shape_slat_sampler"], KeyError, "missing key args.shape_slat_sampler"),
        (["shape_slat_sampler", "params"], KeyError, "missing key args.shape_slat_sampler.params"),
        (["shape_slat_sampler", "params", "steps"], KeyError, "missing key args.shape_slat_sampler.params.steps"),
        (["shape_slat_sampler", "params", "steps"], -3, "args.shape_slat_sampler.params.steps must be >= 1"),
        (["shape_slat_sampler", "params", "steps"], "12", "args.shape_slat_sampler.params.steps must be an integer"),
        (["shape_slat_sampler", "params", "steps"], True, "args.shape_slat_sampler.params.steps must be an integer"),
        (["sparse_structure_sampler", "params", "guidance_strength"], "7.5",
         "args.sparse_structure_sampler.params.guidance_strength must be a number"),
        (["sparse_structure_sampler", "params", "guidance_rescale"], None,
         "args.sparse_structure_sampler.params.guidance_rescale must be a number"),
        (["sparse_structure_sampler", "params", "guidance_interval"], [0.6],
         "args.sparse_structure_sampler.params.guidance_interval must be a list of 2 numbers"),
        (["sparse_structure_sampler", "params", "guidance_interval"], [0.6, 1.5],
         "args.sparse_structure_sampler.params.guidance_interval must be"),
        (["sparse_structure_sampler", "params", "guidance_interval"], [-0.1, 0.5],
         "args.sparse_structure_sampler.params.guidance_interval must be"),
        (["sparse_structure_sampler", "params", "rescale_t"], 0, "args.sparse_structure_sampler.params.rescale_t"),
        (["sparse_structure_sampler", "params", "cfg_strength"], 3.0,
         "unknown key(s) ['cfg_strength'] in args.sparse_structure_sampler.params"),
        (["sparse_structure_sampler", "args", "sigma_min"], 1.0, "args.sparse_structure_sampler.args.sigma_min"),
        (["sparse_structure_sampler", "args", "sigma_min"], KeyError,
         "missing key args.sparse_structure_sampler.args.sigma_min"),
        (["tex_slat_normalization", "std"], [1.0] * 31 + [-1.0], "args.tex_slat_normalization.std must be all > 0"),
        (["tex_slat_normalization", "mean"], [], "args.tex_slat_normalization.mean"),
        (["shape_slat_normalization", "mean"], ["a"] * 32, "args.shape_slat_normalization.mean"),
        (["shape_slat_normalization"], KeyError, "missing key args.shape_slat_normalization"),
        (["default_pipeline_type"], 1024, "args.default_pipeline_type must be a non-empty string"),
        (["default_pipeline_type"], "1024-cascade", "args.default_pipeline_type='1024-cascade'"),
        (["default_pipeline_type"], KeyError, "missing key args.default_pipeline_type"),
        (["rembg_model", "args", "model_name"], KeyError, "missing key args.rembg_model.args.model_name"),
    ],
)
def test_more_malformed_values_name_the_dotted_key(tmp_path, path, value, needle):
    folder = write(tmp_path / "t2", _broken(path, value))
    with pytest.raises(CheckpointError) as info:
        read_pipeline_json(folder)
    message = str(info.value)
    assert needle in message and "pipeline.json" in message and "\n" not in message


@pytest.mark.parametrize("text", ['["not", "an", "object"]', '{"name": "Trellis2ImageTo3DPipeline"}',
                                  '{"name": "Trellis2ImageTo3DPipeline", "args": 3}', ""])
def test_broken_top_level_is_checkpoint_error(tmp_path, text):
    (tmp_path / "pipeline.json").write_text(text)
    with pytest.raises(CheckpointError) as info:
        read_pipeline_json(tmp_path)
    assert "pipeline.json" in str(info.value) and "\n" not in str(info.value)
