"""Strict checkpoint loading and saving: round trips, precision policies, and one-line errors for broken files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from know3d_cli.errors import CheckpointError, ConfigError, ModelMissingError
from know3d_cli.tiny.trellis2 import decoder_args, dit_args, ss_decoder_args
from know3d_cli.trellis2.checkpoint import (
    build_model,
    load_adapter,
    load_model,
    read_checkpoint_json,
    save_adapter,
    save_checkpoint,
)
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
    loaded = load_model(stem, precision="fp32")
    assert type(loaded) is type(model) and not loaded.training
    assert all(not b.is_meta for b in loaded.buffers())  # computed buffers (RoPE) rebuilt
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32, key
        assert torch.equal(value, original[key].float()), key


def test_reference_precision_follows_the_release(tmp_path):
    _, stem = saved(tmp_path, "shape_flow", dtype=torch.bfloat16)
    assert {t.dtype for t in load_file(f"{stem}.safetensors").values()} == {torch.bfloat16}
    flow = load_model(stem, precision="reference")
    assert flow.blocks[0].self_attn.to_qkv.weight.dtype == torch.bfloat16  # json dtype for block Linears
    assert flow.input_layer.weight.dtype == torch.float32 and flow.t_embedder.mlp[0].weight.dtype == torch.float32

    _, stem = saved(tmp_path, "tex_decoder", dtype=torch.float16)
    decoder = load_model(stem, precision="reference")
    assert decoder.blocks_dtype == torch.float16 and decoder.from_latent.weight.dtype == torch.float32
    assert load_model(stem, precision="fp32").blocks_dtype == torch.float32
    with pytest.raises(ConfigError, match="precision"):
        load_model(stem, precision="half")


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
    save_adapter(adapter, tmp_path, "shape")
    assert json.loads((tmp_path / "shape.json").read_text()) == {"name": "Know3dAdapter", "args": adapter.config()}
    loaded = load_adapter(tmp_path, "shape", dtype=torch.bfloat16)
    assert loaded.block_ids == (0, 2)
    assert loaded.ext_attn(2).to_q.weight.dtype == torch.bfloat16  # like the flow blocks it plugs into
    assert loaded.ext_proj[1].weight.dtype == torch.float32  # projector stays fp32
    torch.testing.assert_close(loaded.ext_proj[1].weight, adapter.ext_proj[1].weight, atol=0, rtol=0)
    with pytest.raises(ModelMissingError, match="ss.json"):
        load_adapter(tmp_path, "ss")
    with pytest.raises(ConfigError, match="unknown adapter stage"):
        load_adapter(tmp_path, "texture")
    with pytest.raises(ModelMissingError, match="not found"):
        load_adapter(tmp_path / "nowhere", "ss")
