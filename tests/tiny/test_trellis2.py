"""The tiny TRELLIS.2 folders have the released layout, names, argument keys, key names and dtypes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from scipy import ndimage

from know3d_cli.tiny.trellis2 import (
    SHAPE_DECODER_NAME,
    SS_DECODER_DIR,
    SS_DECODER_NAME,
    TEX_DECODER_NAME,
    TINY_MODEL_CHANNELS,
    TINY_NUM_BLOCKS,
    TINY_SS_OCCUPANCY,
    TRELLIS2_DIR,
    decoder_args,
    dit_args,
    released_models_map,
    ss_decoder_args,
    tiny_ss_decoder,
    write_tiny_trellis2,
)
from know3d_cli.trellis2.checkpoint import Precision, load_model
from know3d_cli.trellis2.pipeline_spec import MODEL_KEYS, read_pipeline_json


@pytest.fixture(scope="module")
def folders(tiny_root):
    """The session's tiny TRELLIS.2 folders (seed 0, cond_channels = the tiny DINOv3 width, 32)."""
    return tiny_root / TRELLIS2_DIR, tiny_root / SS_DECODER_DIR


def _dtypes(path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return {f.get_slice(k).get_dtype() for k in f.keys()}


def _shape_of_keys(keys) -> set[str]:
    """Key names with block indices replaced, so a 2-block tiny model compares with the 30-block release."""
    return {re.sub(r"(?<=\.)\d+(?=\.)", "#", k) for k in keys}


def test_layout_and_names_are_the_release(folders, released_checkpoint):
    trellis, large = folders
    spec = read_pipeline_json(trellis)
    assert dict(spec.models) == released_models_map()
    for role, path in released_models_map().items():
        stem = spec.checkpoint(role, trellis, large)
        manifest_key = path.removeprefix("microsoft/") if path.startswith("microsoft/") else f"TRELLIS.2-4B/{path}"
        released = released_checkpoint(manifest_key)
        config = json.loads(Path(f"{stem}.json").read_text())
        assert config["name"] == released["class"]
        assert set(config["args"]) - {"dtype", "block_args"} == set(released["args"]) - {"dtype", "block_args"}
        with safe_open(f"{stem}.safetensors", framework="pt") as f:
            tiny = set(f.keys())
        assert _shape_of_keys(tiny) == _shape_of_keys(released["tensors"]), role  # every kind of tensor, no other
        assert len(tiny) <= len(released["tensors"]), role
        # block-free keys (embedders, input/output layers) are exactly the released ones
        plain = {k for k in released["tensors"] if not re.search(r"\.\d+\.", k)}
        assert plain == {k for k in tiny if not re.search(r"\.\d+\.", k)}, role


def test_shaped_decoder_is_deterministic():
    a, b = tiny_ss_decoder(seed=3), tiny_ss_decoder(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# -------------------------------------------------------------------------------------------------- more
DIT_ROLES = [role for role in MODEL_KEYS if "flow_model" in role]


def _manifest_key(path: str) -> str:
    return path.removeprefix("microsoft/") if path.startswith("microsoft/") else f"TRELLIS.2-4B/{path}"


def test_released_models_map_names():
    models = released_models_map()
    assert set(models) == set(MODEL_KEYS)
    assert models["sparse_structure_decoder"] == f"microsoft/TRELLIS-image-large/ckpts/{SS_DECODER_NAME}"
    assert models["shape_slat_decoder"] == f"ckpts/{SHAPE_DECODER_NAME}"
    assert models["tex_slat_decoder"] == f"ckpts/{TEX_DECODER_NAME}"
    assert models["sparse_structure_flow_model"] == "ckpts/ss_flow_img_dit_1_3B_64_bf16"
    assert models["shape_slat_flow_model_1024"] == "ckpts/slat_flow_img2shape_dit_1_3B_1024_bf16"
    assert models["tex_slat_flow_model_512"] == "ckpts/slat_flow_imgshape2tex_dit_1_3B_512_bf16"


def test_args_keys_are_the_released_keys(released_checkpoint):
    models = released_models_map()
    for role in DIT_ROLES:
        released = released_checkpoint(_manifest_key(models[role]))["args"]
        tiny = dit_args(role)
        # the tiny jsons add the block dtype the released jsons leave to the stored tensors
        assert set(tiny) - set(released) == {"dtype"} and set(released) <= set(tiny), role
        assert tiny["num_blocks"] == TINY_NUM_BLOCKS and tiny["model_channels"] == TINY_MODEL_CHANNELS
        for key in ("in_channels", "out_channels", "resolution", "pe_mode", "share_mod", "qk_rms_norm"):
            assert tiny[key] == released[key], (role, key)
    for role, args in (("shape_slat_decoder", decoder_args(True)), ("tex_slat_decoder", decoder_args(False)),
                       ("sparse_structure_decoder", ss_decoder_args())):
        released = released_checkpoint(_manifest_key(models[role]))["args"]
        assert set(args) == set(released), role
        assert args["use_fp16"] is True and released["use_fp16"] is True
        assert args["latent_channels"] == released["latent_channels"], role


def test_every_stored_dtype(folders):
    trellis, large = folders
    models = released_models_map()
    for role in MODEL_KEYS:
        if role == "sparse_structure_decoder":
            continue
        expected = {"BF16"} if role in DIT_ROLES else {"F16"}
        assert _dtypes(trellis / f"{models[role]}.safetensors") == expected, role
    with safe_open(str(large / "ckpts" / f"{SS_DECODER_NAME}.safetensors"), framework="pt") as f:
        for key in f.keys():
            dtype = f.get_slice(key).get_dtype()
            block_conv = key.startswith(("middle_block.", "blocks.")) and (".conv" in key)
            assert dtype == ("F16" if block_conv else "F32"), key


def test_every_tiny_checkpoint_loads_strictly(folders):
    trellis, large = folders
    spec = read_pipeline_json(trellis)
    for role in MODEL_KEYS:
        stem = spec.checkpoint(role, trellis, large)
        model = load_model(stem, precision=Precision.reference)
        assert json.loads(Path(f"{stem}.json").read_text())["name"] == type(model).__name__
        low = {p.dtype for p in model.parameters()} - {torch.float32}
        assert low == ({torch.bfloat16} if role in DIT_ROLES else {torch.float16}), role


def test_whole_folders_are_idempotent_deterministic_and_rewritten_on_a_change(folders, tmp_path):
    trellis, large = folders

    def files(*roots):  # both folders sit side by side under one root
        return {p.relative_to(root.parent): p for root in roots for p in root.rglob("*") if p.is_file()}

    before = {rel: (p.stat().st_mtime_ns, p.read_bytes()) for rel, p in files(trellis, large).items()}
    assert write_tiny_trellis2(trellis.parent, seed=0, cond_channels=32) == (trellis, large)
    after = {rel: (p.stat().st_mtime_ns, p.read_bytes()) for rel, p in files(trellis, large).items()}
    assert after == before  # complete: nothing rewritten
    again = write_tiny_trellis2(tmp_path, seed=0, cond_channels=32)
    copies = {rel: p.read_bytes() for rel, p in files(*again).items()}
    weights = [rel for rel in before if rel.suffix in (".safetensors", ".json")]
    assert len(weights) >= 17  # 8 pairs + pipeline.json
    for rel in weights:
        assert copies[rel] == before[rel][1], rel
    # another seed and width: the folders are rewritten in place
    changed, _ = write_tiny_trellis2(tmp_path, seed=1, cond_channels=16)
    assert changed == again[0]
    name = f"ckpts/{SHAPE_DECODER_NAME}.safetensors"
    assert (changed / name).read_bytes() != (trellis / name).read_bytes()
    for role in DIT_ROLES:
        stem = changed / released_models_map()[role]
        assert json.loads(Path(f"{stem}.json").read_text())["args"]["cond_channels"] == 16
        load_model(stem, precision=Precision.fp32)


def test_ss_decoder_makes_one_central_blob_on_several_latents(folders):
    _, large = folders
    decoder = load_model(large / "ckpts" / SS_DECODER_NAME, precision=Precision.fp32)
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        logits = decoder(torch.randn(3, 8, 16, 16, 16, generator=generator))
    assert logits.shape == (3, 1, 64, 64, 64)
    for occupied in (logits[:, 0] > 0).numpy():
        assert TINY_SS_OCCUPANCY / 2 < occupied.mean() < TINY_SS_OCCUPANCY * 2
        labels, count = ndimage.label(occupied)
        assert count == 1
        border = np.zeros_like(occupied)
        border[[0, -1]] = border[:, [0, -1]] = border[:, :, [0, -1]] = True
        assert not (occupied & border).any()
        # hole-free: filling holes adds nothing
        assert (ndimage.binary_fill_holes(occupied) == occupied).all()
        assert np.allclose(np.argwhere(occupied).mean(axis=0), 31.5, atol=4)


def test_tiny_tensor_ranks_are_the_released_ranks(folders, released_checkpoint):
    """Every tiny tensor, block indices normalised, has the rank of its released counterpart (only widths shrink)."""
    trellis, large = folders
    spec = read_pipeline_json(trellis)
    for role, path in released_models_map().items():
        tensors = released_checkpoint(_manifest_key(path))["tensors"]
        normalised = {}
        for key, shape in tensors.items():
            normalised.setdefault(next(iter(_shape_of_keys([key]))), set()).add(len(shape))
        stem = spec.checkpoint(role, trellis, large)
        with safe_open(f"{stem}.safetensors", framework="pt") as f:
            for key in f.keys():
                rank = len(f.get_slice(key).get_shape())
                if key in tensors:  # the same name in the release (also e.g. out_layer.0 vs out_layer.2)
                    assert rank == len(tensors[key]), (role, key)
                else:  # a block the release has under another index
                    assert rank in normalised[next(iter(_shape_of_keys([key])))], (role, key)


def _latent_ball(seed: int):
    """A de-normalised random shape latent on a radius-6 ball of the 32^3 latent grid."""
    from know3d_cli.tiny.trellis2 import RELEASED_PIPELINE_ARGS
    from know3d_cli.trellis2.sparse.tensor import SparseTensor

    axis = torch.arange(32)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    ball = grid[((grid - 15.5) ** 2).sum(dim=1) <= 36]
    coords = torch.cat([torch.zeros(len(ball), 1, dtype=torch.int64), ball], dim=1).to(torch.int32)
    norm = RELEASED_PIPELINE_ARGS["shape_slat_normalization"]
    feats = torch.randn(len(coords), 32, generator=torch.Generator().manual_seed(seed))
    return SparseTensor(feats * torch.tensor(norm["std"]) + torch.tensor(norm["mean"]), coords)


@pytest.mark.parametrize("precision", ["fp32", "reference"])
def test_shape_decoder_subdivides_all_or_nothing(folders, precision):
    from know3d_cli.tiny.trellis2 import TINY_SUBDIVIDED

    trellis, _ = folders
    decoder = load_model(trellis / "ckpts" / SHAPE_DECODER_NAME, precision=precision)
    for level in decoder.blocks[:-1]:  # identical rows: one decision per voxel for all 8 children
        head = level[-1].to_subdiv
        assert torch.equal(head.weight, head.weight[:1].expand_as(head.weight))
        assert torch.equal(head.bias, head.bias[:1].expand_as(head.bias))
    latent = _latent_ball(seed=5)  # not the calibration latent
    with torch.no_grad():
        out, subs = decoder(latent, return_subs=True)
    assert len(subs) == decoder.num_upsamples == 4
    counts = [len(latent.feats)]
    for logits in subs:
        assert len(logits.feats) == counts[-1] and logits.feats.shape[1] == 8
        children = logits.feats > 0
        assert (children.all(dim=1) | ~children.any(dim=1)).all()  # all 8 children or none
        fraction = children.all(dim=1).float().mean().item()
        assert abs(fraction - TINY_SUBDIVIDED) < 0.1, fraction
        counts.append(8 * int(children.all(dim=1).sum()))  # the next level holds exactly those children
    assert counts[-1] == len(out.feats)
    assert all(1.6 < b / a < 3.2 for a, b in zip(counts, counts[1:])), counts  # ~x2.4 per level, not ~x4


# ------------------------------------------------------------------------------------------------ encoders
def _encoder_stems(trellis: Path, large: Path) -> dict[str, Path]:
    """Released manifest key -> tiny stem of the three encoders (not in pipeline.json, as in the release)."""
    from know3d_cli.tiny.trellis2 import SHAPE_ENCODER_NAME, SS_ENCODER_NAME, TEX_ENCODER_NAME

    return {
        f"TRELLIS.2-4B/ckpts/{SHAPE_ENCODER_NAME}": trellis / "ckpts" / SHAPE_ENCODER_NAME,
        f"TRELLIS.2-4B/ckpts/{TEX_ENCODER_NAME}": trellis / "ckpts" / TEX_ENCODER_NAME,
        f"TRELLIS-image-large/ckpts/{SS_ENCODER_NAME}": large / "ckpts" / SS_ENCODER_NAME,
    }


def test_tiny_encoders_have_the_released_names_args_and_keys(folders, released_checkpoint):
    from know3d_cli.tiny.trellis2 import encoder_args, ss_encoder_args

    trellis, large = folders
    assert not any("_enc_" in path for path in dict(read_pipeline_json(trellis).models).values())  # as released
    for key, stem in _encoder_stems(trellis, large).items():
        released = released_checkpoint(key)
        config = json.loads(Path(f"{stem}.json").read_text())
        assert config["name"] == released["class"], key
        assert set(config["args"]) == set(released["args"]), key
        assert config["args"]["use_fp16"] is True and config["args"]["latent_channels"] == released["args"][
            "latent_channels"]
        assert config["args"] in (encoder_args(True), encoder_args(False), ss_encoder_args())
        with safe_open(f"{stem}.safetensors", framework="pt") as f:
            tiny = {k: len(f.get_slice(k).get_shape()) for k in f.keys()}
        assert _shape_of_keys(tiny) == _shape_of_keys(released["tensors"]), key  # every kind of tensor, no other
        plain = {k for k in released["tensors"] if not re.search(r"\.\d+\.", k)}
        assert plain == {k for k in tiny if not re.search(r"\.\d+\.", k)}, key
        ranks: dict[str, set[int]] = {}  # out_layer.0 and out_layer.2 share a normalised name
        for name, shape in released["tensors"].items():
            ranks.setdefault(next(iter(_shape_of_keys([name]))), set()).add(len(shape))
        for name, rank in tiny.items():
            same = len(released["tensors"][name]) == rank if name in released["tensors"] else None
            assert same or (same is None and rank in ranks[next(iter(_shape_of_keys([name])))]), (key, name)


def test_tiny_encoders_store_the_released_dtypes_and_load_strictly(folders):
    trellis, large = folders
    for key, stem in _encoder_stems(trellis, large).items():
        with safe_open(f"{stem}.safetensors", framework="pt") as f:
            stored = {k: f.get_slice(k).get_dtype() for k in f.keys()}
        if key.startswith("TRELLIS-image-large"):  # fp16 block convs, fp32 input/output layers and norms
            for name, dtype in stored.items():
                block_conv = name.startswith(("middle_block.", "blocks.")) and ".conv" in name
                assert dtype == ("F16" if block_conv else "F32"), name
        else:
            assert set(stored.values()) == {"F16"}, key
        model = load_model(stem, precision=Precision.reference)
        assert type(model).__name__ == json.loads(Path(f"{stem}.json").read_text())["name"]
        assert model.blocks_dtype == torch.float16 and model.input_layer.weight.dtype == torch.float32
        assert load_model(stem, precision=Precision.fp32).blocks_dtype == torch.float32
