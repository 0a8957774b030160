"""Strict checkpoint loading and saving: round trips, precision policies, and one-line errors for broken files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from know3d_cli.errors import CheckpointError, ModelMissingError
from know3d_cli.tiny.trellis2 import decoder_args, dit_args, ss_decoder_args
from know3d_cli.trellis2.checkpoint import (
    Precision,
    adapter_stem,
    build_model,
    load_adapter,
    load_model,
    read_checkpoint_json,
    read_json_object,
    save_adapter,
    save_checkpoint,
)
from know3d_cli.trellis2.settings import AdapterStage
from know3d_cli.trellis2.models import (
    FlexiDualGridVaeDecoder,
    Know3dAdapter,
    SLatFlowModel,
    SparseStructureDecoder,
    SparseStructureFlowModel,
    SparseUnetVaeDecoder,
)

NETWORKS = {
    "ss_flow": (SparseStructureFlowModel, dit_args("sparse_structure_flow_model")),
    "shape_flow": (SLatFlowModel, dit_args("shape_slat_flow_model_512")),
    "ss_decoder": (SparseStructureDecoder, ss_decoder_args()),
    "shape_decoder": (FlexiDualGridVaeDecoder, decoder_args(shape=True)),
    "tex_decoder": (SparseUnetVaeDecoder, decoder_args(shape=False)),
}


def saved(tmp_path, kind: str, dtype=None):
    cls, args = NETWORKS[kind]
    torch.manual_seed(0)
    model = cls(**args)
    stem = save_checkpoint(model, tmp_path / kind, cls.__name__, args, dtype=dtype)
    return model, stem


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_round_trip_in_fp32_is_exact(tmp_path, kind):
    model, stem = saved(tmp_path, kind)
    loaded = load_model(stem, precision=Precision.fp32)
    assert type(loaded) is type(model) and not loaded.training
    assert all(not b.is_meta for b in loaded.buffers())  # computed buffers (RoPE) rebuilt
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32, key
        assert torch.equal(value, original[key].float()), key


def test_reference_precision_follows_the_release(tmp_path):
    _, stem = saved(tmp_path, "shape_flow", dtype=torch.bfloat16)
    assert {t.dtype for t in load_file(f"{stem}.safetensors").values()} == {torch.bfloat16}
    flow = load_model(stem, precision=Precision.reference)
    assert flow.blocks[0].self_attn.to_qkv.weight.dtype == torch.bfloat16  # json dtype for block Linears
    assert flow.input_layer.weight.dtype == torch.float32 and flow.t_embedder.mlp[0].weight.dtype == torch.float32

    _, stem = saved(tmp_path, "tex_decoder", dtype=torch.float16)
    decoder = load_model(stem, precision=Precision.reference)
    assert decoder.blocks_dtype == torch.float16 and decoder.from_latent.weight.dtype == torch.float32
    assert load_model(stem, precision=Precision.fp32).blocks_dtype == torch.float32


def test_missing_files_are_model_missing(tmp_path):
    with pytest.raises(ModelMissingError, match="nothing.json"):
        load_model(tmp_path / "nothing")
    _, stem = saved(tmp_path, "ss_decoder")
    (tmp_path / "ss_decoder.safetensors").unlink()
    with pytest.raises(ModelMissingError, match="ss_decoder.safetensors"):
        load_model(stem)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"args": {}}', "'name'"),
        ('{"name": "Bogus", "args": {}}', "unknown network class 'Bogus'"),
        ('{"name": "SparseStructureDecoder", "args": {"out_channels": 1, "typo": 3}}', "unexpected argument"),
        ('{"name": "SparseStructureDecoder", "args": {"out_channels": 1}}', "missing argument"),
        ('{"name": "SparseStructureDecoder", "args": []}', "'args' must be an object"),
    ],
)
def test_malformed_json_is_checkpoint_error(tmp_path, text, needle):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(CheckpointError, match=needle) as info:
        build_model(read_checkpoint_json(tmp_path / "bad"))
    assert "\n" not in str(info.value) and "bad.json" in str(info.value)


def test_weights_that_do_not_match_are_listed(tmp_path):
    model, stem = saved(tmp_path, "ss_decoder")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    first = next(iter(state))
    broken = dict(state)
    broken.pop(first)
    broken["extra.weight"] = torch.zeros(2)
    last = list(state)[-1]
    broken[last] = torch.zeros(*state[last].shape, 2)
    save_file(broken, f"{stem}.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_model(stem)
    message = str(info.value)
    assert "1 missing key(s)" in message and first in message
    assert "1 unexpected key(s)" in message and "extra.weight" in message
    assert "shape mismatch" in message and last in message


def test_truncated_weights_are_checkpoint_error(tmp_path):
    _, stem = saved(tmp_path, "ss_decoder")
    path = tmp_path / "ss_decoder.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(stem)


def test_adapter_round_trip_per_stage(tmp_path):
    torch.manual_seed(0)
    adapter = Know3dAdapter(ext_channels=12, proj_channels=8, model_channels=16, num_heads=2, blocks=[0, 2])
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
    save_adapter(adapter, tmp_path, AdapterStage.shape)
    assert json.loads((tmp_path / "shape.json").read_text()) == {"name": "Know3dAdapter", "args": adapter.config()}
    loaded = load_adapter(tmp_path, AdapterStage.shape, dtype=torch.bfloat16)
    assert loaded.block_ids == (0, 2)
    assert loaded.editor_attention(2).to_q.weight.dtype == torch.bfloat16  # like the flow blocks it plugs into
    assert loaded.ext_proj[1].weight.dtype == torch.float32  # projector stays fp32
    torch.testing.assert_close(loaded.ext_proj[1].weight, adapter.ext_proj[1].weight, atol=0, rtol=0)
    with pytest.raises(ModelMissingError, match="ss.json"):
        load_adapter(tmp_path, AdapterStage.ss)
    with pytest.raises(ModelMissingError, match="not found"):
        load_adapter(tmp_path / "nowhere", AdapterStage.ss)


# --------------------------------------------------------------------------------------- precision, per class
def _block_types(kind: str):
    """(containers, module types) of the layers that the reference precision puts in a low dtype."""
    if kind.endswith("flow"):
        return ("blocks",), (torch.nn.Linear,)
    if kind == "ss_decoder":
        return ("middle_block", "blocks"), (torch.nn.Conv3d,)
    from know3d_cli.trellis2.sparse.conv import SubMConv3d

    return ("blocks",), (torch.nn.Linear, SubMConv3d)


def _expected_reference_dtypes(model, kind: str, low: torch.dtype) -> dict[str, torch.dtype]:
    containers, types = _block_types(kind)
    expected = {name: torch.float32 for name, _ in model.named_parameters()}
    for container in containers:
        for mname, module in getattr(model, container).named_modules():
            if isinstance(module, types):
                for pname, _ in module.named_parameters(recurse=False):
                    expected[f"{container}.{mname}.{pname}"] = low
    return expected


RELEASE_DTYPES = {  # stored dtype of the release, reference dtype of the low-precision layers
    "ss_flow": (torch.bfloat16, torch.bfloat16),
    "shape_flow": (torch.bfloat16, torch.bfloat16),
    "shape_decoder": (torch.float16, torch.float16),
    "tex_decoder": (torch.float16, torch.float16),
    "ss_decoder": (None, torch.float16),
}


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_reference_precision_per_class(tmp_path, kind):
    stored, low = RELEASE_DTYPES[kind]
    cls, args = NETWORKS[kind]
    torch.manual_seed(1)
    model = cls(**args)
    if kind == "ss_decoder":
        model.convert_to_fp16()  # the released fp16-convs / fp32-rest mix, saved as it is (dtype=None)
    stem = save_checkpoint(model, tmp_path / kind, cls.__name__, args, dtype=stored)
    loaded = load_model(stem, precision=Precision.reference)
    expected = _expected_reference_dtypes(loaded, kind, low)
    assert low in expected.values() and torch.float32 in expected.values()
    actual = {name: p.dtype for name, p in loaded.named_parameters()}
    assert actual == expected
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        reference = original[key] if stored is None else original[key].to(stored)
        assert torch.equal(value.float(), reference.float()), key  # the stored values, only re-typed
    assert all(not b.is_meta for b in loaded.buffers())
    assert {p.dtype for p in load_model(stem, precision=Precision.fp32).parameters()} == {torch.float32}


def test_released_flow_without_json_dtype_uses_the_stored_block_dtype(tmp_path):
    args = {k: v for k, v in NETWORKS["ss_flow"][1].items() if k != "dtype"}  # the released jsons have no dtype
    torch.manual_seed(0)
    model = SparseStructureFlowModel(**args)
    stem = save_checkpoint(model, tmp_path / "bf16", "SparseStructureFlowModel", args, dtype=torch.bfloat16)
    flow = load_model(stem, precision=Precision.reference)
    assert flow.blocks[0].mlp.mlp[0].weight.dtype == torch.bfloat16
    assert flow.out_layer.weight.dtype == torch.float32
    stem = save_checkpoint(model, tmp_path / "fp32", "SparseStructureFlowModel", args)
    assert load_model(stem, precision=Precision.reference).blocks[0].mlp.mlp[0].weight.dtype == torch.float32


def test_ss_flow_rope_buffer_is_rebuilt(tmp_path):
    model, stem = saved(tmp_path, "ss_flow", dtype=torch.bfloat16)
    assert "rope_phases" not in load_file(f"{stem}.safetensors")  # computed, never stored
    for precision in ("reference", "fp32"):
        flow = load_model(stem, precision=precision)
        assert not flow.rope_phases.is_meta and flow.rope_phases.device.type == "cpu"
        assert flow.rope_phases.dtype == torch.complex64
        torch.testing.assert_close(flow.rope_phases, model.rope_phases, atol=0, rtol=0)


@pytest.mark.parametrize(
    "dtype,expected",
    [(None, {torch.float16, torch.float32}), (torch.float16, {torch.float16}), (torch.bfloat16, {torch.bfloat16}),
     (torch.float32, {torch.float32})],
)
def test_stored_dtype_follows_the_dtype_argument(tmp_path, dtype, expected):
    cls, args = NETWORKS["ss_decoder"]
    model = cls(**args)
    model.convert_to_fp16()
    stem = save_checkpoint(model, tmp_path / "dec", cls.__name__, args, dtype=dtype)
    assert {t.dtype for t in load_file(f"{stem}.safetensors").values()} == expected
    assert json.loads((tmp_path / "dec.json").read_text()) == {"name": cls.__name__, "args": args}
    assert {p.dtype for p in load_model(stem, precision=Precision.fp32).parameters()} == {torch.float32}


# ------------------------------------------------------------------------------------------- error messages
def _one_line(info) -> str:
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_read_json_object(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(ModelMissingError, match="custom message"):
        read_json_object(path, "custom message")
    path.write_text('{"a": 1}')
    assert read_json_object(path, "unused") == {"a": 1}
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        read_json_object(path, "unused")
    assert "x.json" in _one_line(info)
    path.write_text('"just a string"')
    with pytest.raises(CheckpointError, match="expected a JSON object") as info:
        read_json_object(path, "unused")
    _one_line(info)


@pytest.mark.parametrize(
    "config,error,needle",
    [
        (None, ModelMissingError, "bad.json"),
        ("{not json", CheckpointError, "not valid JSON"),
        ("[1, 2]", CheckpointError, "JSON object"),
        ('{"args": {}}', CheckpointError, "'name'"),
        ('{"name": 3, "args": {}}', CheckpointError, "'name'"),
        ('{"name": "Bogus", "args": {}}', CheckpointError, "unknown network class 'Bogus'"),
        ('{"name": "SparseStructureDecoder", "args": {"out_channels": 1, "latent_channels": 8, "num_res_blocks": 1,'
         ' "num_res_blocks_middle": 1, "channels": [8], "typo": 3}}', CheckpointError, r"unexpected argument\(s\) \['typo'\]"),
        ('{"name": "SparseStructureDecoder", "args": {"out_channels": 1}}', CheckpointError, "missing argument"),
        ('{"name": "SparseStructureFlowModel", "args": {"resolution": 4, "in_channels": 8, "out_channels": 8,'
         ' "model_channels": 32, "cond_channels": 32, "num_blocks": 1, "num_heads": 2, "pe_mode": "ape"}}',
         CheckpointError, "cannot build SparseStructureFlowModel"),
    ],
)
def test_load_model_config_errors_are_one_line(tmp_path, config, error, needle):
    save_file({"x": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))  # weights present: the json is at fault
    if config is not None:
        (tmp_path / "bad.json").write_text(config)
    with pytest.raises(error, match=needle) as info:
        load_model(tmp_path / "bad")
    assert "bad.json" in _one_line(info)


def _mutate(state: dict, how: str) -> tuple[dict, str]:
    state = dict(state)
    keys = list(state)
    if how == "missing":
        state.pop(keys[0])
        return state, keys[0]
    if how == "extra":
        state["unexpected.weight"] = torch.zeros(3)
        return state, "unexpected.weight"
    state[keys[-1]] = torch.zeros(*state[keys[-1]].shape, 2)
    return state, keys[-1]


@pytest.mark.parametrize("how,needle", [("missing", "1 missing key"), ("extra", "1 unexpected key"),
                                        ("shape", "1 shape mismatch")])
def test_each_weight_mismatch_is_one_line(tmp_path, how, needle):
    model, stem = saved(tmp_path, "ss_flow", dtype=torch.bfloat16)
    state, key = _mutate(load_file(f"{stem}.safetensors"), how)
    save_file(state, f"{stem}.safetensors")
    with pytest.raises(CheckpointError, match=needle) as info:
        load_model(stem)
    message = _one_line(info)
    assert key in message and "ss_flow.safetensors" in message


def test_empty_weights_file_is_checkpoint_error(tmp_path):
    _, stem = saved(tmp_path, "ss_decoder")
    (tmp_path / "ss_decoder.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a readable safetensors") as info:
        load_model(stem)
    _one_line(info)


# ------------------------------------------------------------------------------------------------- adapters
def _adapter(blocks=(0, 2)) -> Know3dAdapter:
    torch.manual_seed(0)
    adapter = Know3dAdapter(ext_channels=12, proj_channels=8, model_channels=16, num_heads=2, blocks=list(blocks))
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
    return adapter


def _adapter_expected_dtypes(adapter, dtype) -> dict[str, torch.dtype]:
    expected = {name: torch.float32 for name, _ in adapter.named_parameters()}
    for mname, module in adapter.blocks.named_modules():
        if isinstance(module, torch.nn.Linear):
            for pname, _ in module.named_parameters(recurse=False):
                expected[f"blocks.{mname}.{pname}"] = dtype
    return expected


@pytest.mark.parametrize("stage", list(AdapterStage))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_adapter_stage_round_trip_and_dtype_policy(tmp_path, stage, dtype):
    adapter = _adapter()
    assert save_adapter(adapter, tmp_path, stage) == tmp_path
    assert adapter_stem(tmp_path, stage) == tmp_path / stage.value
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stage}.json", f"{stage}.safetensors"]
    loaded = load_adapter(tmp_path, stage, dtype=dtype)
    assert isinstance(loaded, Know3dAdapter) and not loaded.training
    assert loaded.config() == adapter.config()
    expected = _adapter_expected_dtypes(loaded, dtype)
    assert dtype in expected.values() and torch.float32 in expected.values()
    assert {name: p.dtype for name, p in loaded.named_parameters()} == expected
    original = adapter.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key].to(value.dtype)), key


def test_adapter_stored_dtype_and_strictness(tmp_path):
    adapter = _adapter()
    save_adapter(adapter, tmp_path, AdapterStage.tex, dtype=torch.bfloat16)
    assert {t.dtype for t in load_file(str(tmp_path / "tex.safetensors")).values()} == {torch.bfloat16}
    assert {p.dtype for p in load_adapter(tmp_path, AdapterStage.tex).parameters()} == {torch.float32}
    # a json that describes another adapter than the weights -> strict key check
    config = json.loads((tmp_path / "tex.json").read_text())
    config["args"]["blocks"] = [0, 1]
    (tmp_path / "tex.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing key") as info:
        load_adapter(tmp_path, AdapterStage.tex)
    _one_line(info)
    # adapters are not TRELLIS.2 networks, and TRELLIS.2 networks are not adapters
    save_adapter(adapter, tmp_path, AdapterStage.ss)
    with pytest.raises(CheckpointError, match="unknown network class 'Know3dAdapter'"):
        load_model(tmp_path / "ss")
    cls, args = NETWORKS["ss_decoder"]
    save_checkpoint(cls(**args), tmp_path / "shape", cls.__name__, args)
    with pytest.raises(CheckpointError, match="unknown network class 'SparseStructureDecoder'"):
        load_adapter(tmp_path, AdapterStage.shape)


def test_missing_adapter_files_are_model_missing(tmp_path):
    assert adapter_stem(tmp_path, AdapterStage.tex) == tmp_path / "tex"
    save_adapter(_adapter(), tmp_path, AdapterStage.shape)
    for stage in (AdapterStage.ss, AdapterStage.tex):
        with pytest.raises(ModelMissingError, match=f"{stage}.json") as info:
            load_adapter(tmp_path, stage)
        _one_line(info)
    (tmp_path / "shape.safetensors").unlink()
    with pytest.raises(ModelMissingError, match="shape.safetensors"):
        load_adapter(tmp_path, AdapterStage.shape)
    with pytest.raises(ModelMissingError, match="adapter directory"):
        load_adapter(tmp_path / "nowhere", AdapterStage.shape)


def test_weights_cut_short_after_the_header_are_checkpoint_error(tmp_path):
    """The header is intact but the data ends early: caught when the header is read, before any tensor."""
    _, stem = saved(tmp_path, "ss_decoder")
    path = tmp_path / "ss_decoder.safetensors"
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(CheckpointError, match="not a readable safetensors") as info:
        load_model(stem)
    assert "ss_decoder.safetensors" in _one_line(info)


def test_read_checkpoint_json_fields_and_default_args(tmp_path):
    (tmp_path / "a.json").write_text('{"name": "SparseStructureDecoder", "args": {"out_channels": 1}}')
    config = read_checkpoint_json(tmp_path / "a")
    assert (config.name, config.args, config.path) == ("SparseStructureDecoder", {"out_channels": 1}, tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"name": "SparseStructureDecoder"}')
    assert read_checkpoint_json(tmp_path / "b").args == {}
