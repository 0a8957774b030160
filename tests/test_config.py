"""`config.load_config`: every choice is an Enum of the schema, checked once when the configuration is composed."""

from __future__ import annotations

import json

import pytest

from know3d_cli.config import (
    AlphaMode,
    Background,
    EditorPipelineKind,
    ExportFormat,
    Know3dConfig,
    Mode,
    Preview,
    RuntimeDtype,
    TapTokens,
    TextureFormat,
    load_config,
    to_container,
    to_yaml,
    validate,
)
from know3d_cli.errors import ConfigError
from know3d_cli.trellis2 import AdapterNegative, AdapterStage, AttentionBackend, ConvBackend, Offload, PipelineType

# every choice key of the schema, with its Enum
CHOICES = {
    "mode": Mode,
    "preview": Preview,
    "preprocess.background": Background,
    "editor.pipeline": EditorPipelineKind,
    "tap.tokens": TapTokens,
    "adapter.uncond": AdapterNegative,
    "trellis2.pipeline_type": PipelineType,
    "export.format": ExportFormat,
    "export.texture_format": TextureFormat,
    "export.alpha_mode": AlphaMode,
    "runtime.dtype": RuntimeDtype,
    "runtime.offload": Offload,
    "runtime.attention": AttentionBackend,
    "runtime.sparse_conv": ConvBackend,
}


def _get(cfg, key: str):
    for part in filter(None, key.split(".")):
        cfg = getattr(cfg, part)
    return cfg


def test_every_value_of_every_choice_composes_to_its_member():
    for i in range(max(len(choice) for choice in CHOICES.values())):  # one compose sets the i-th value of every key
        members = {key: list(choice)[i % len(choice)] for key, choice in CHOICES.items()}
        cfg = load_config([f"{key}={member.value}" for key, member in members.items()])
        for key, member in members.items():
            assert _get(cfg, key) is member, key


@pytest.mark.parametrize("key", ["mode", "trellis2.pipeline_type", "export.alpha_mode", "runtime.attention"])
def test_an_invalid_choice_is_one_line_naming_the_key_and_every_value(key):
    choice = CHOICES[key]
    with pytest.raises(ConfigError) as info:
        load_config([f"{key}=bogus"])
    message = str(info.value)
    assert "\n" not in message
    assert f"invalid value 'bogus' for {key}; expected one of: {', '.join(choice.values())}" in message


def test_list_of_choices_names_the_bad_entry():
    assert load_config(["adapter.stages=[tex,ss]"]).adapter.stages == [AdapterStage.tex, AdapterStage.ss]
    with pytest.raises(ConfigError, match=r"invalid value 'texture' for adapter.stages\[1\]; expected one of: ss, "
                                          r"shape, tex"):
        load_config(["adapter.stages=[ss,texture]"])


def test_numeric_pipeline_types_read_as_integers_by_hydra():
    assert load_config(["trellis2.pipeline_type=512"]).trellis2.pipeline_type is PipelineType["512"]
    assert load_config(["trellis2.pipeline_type=1024"]).trellis2.pipeline_type is PipelineType["1024"]
    with pytest.raises(ConfigError, match="trellis2.pipeline_type"):
        load_config(["trellis2.pipeline_type=2048"])


def test_choices_are_plain_strings_in_metadata_and_config_show():
    cfg = load_config(["trellis2.pipeline_type=1536_cascade", "export.alpha_mode=MASK"])
    data = to_container(cfg)
    assert data["trellis2"]["pipeline_type"] == "1536_cascade" and type(data["trellis2"]["pipeline_type"]) is str
    assert data["adapter"]["stages"] == ["ss", "shape"] and data["runtime"]["offload"] == "sequential"
    assert json.loads(json.dumps(data)) == data
    shown = to_yaml(cfg)
    assert "pipeline_type: 1536_cascade" in shown and "alpha_mode: MASK" in shown


@pytest.mark.parametrize(
    "key, value",
    [("trellis2.ss.steps", 0), ("trellis2.shape.rescale_t", 0.0), ("trellis2.tex.guidance_rescale", 1.5),
     ("trellis2.ss.guidance_strength", -1.0), ("trellis2.max_num_tokens", 0), ("adapter.pool", 3),
     ("editor.condition_area", 1000)],
)
def test_trellis2_ranges_are_checked(key, value):
    cfg = Know3dConfig()
    validate(cfg)  # the defaults pass
    *path, name = key.split(".")
    setattr(_get(cfg, ".".join(path)), name, value)
    with pytest.raises(ConfigError, match=f"invalid value {value} for {key}"):
        validate(cfg)


def test_a_range_error_from_an_override_names_the_key():
    with pytest.raises(ConfigError, match="trellis2.ss.steps"):
        load_config(["trellis2.ss.steps=0"])
