"""TRELLIS.2 flow transformers: checkpoint keys/shapes, tiny forwards, dense vs sparse, precision policy, caching."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.errors import CheckpointError
from know3d_cli.trellis2.models import SLatFlowModel, SparseStructureFlowModel
from know3d_cli.trellis2.nn.cross_attention import CrossContext
from know3d_cli.trellis2.nn.norms import MultiHeadRMSNorm
from know3d_cli.trellis2.nn.timestep import timestep_sinusoids
from know3d_cli.trellis2.sparse.coordinate_cache import RopeKey
from know3d_cli.trellis2.sparse.tensor import SparseTensor

FLOW_CHECKPOINTS = [
    "ss_flow_img_dit_1_3B_64_bf16",
    "slat_flow_img2shape_dit_1_3B_512_bf16",
    "slat_flow_img2shape_dit_1_3B_1024_bf16",
    "slat_flow_imgshape2tex_dit_1_3B_512_bf16",
    "slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
]
CLASSES = {"SparseStructureFlowModel": SparseStructureFlowModel, "SLatFlowModel": SLatFlowModel}

# C = 32, 2 heads of 16 (RoPE: 2 frequencies per axis + 2 zero-padded angles), FFN 64
TINY = dict(
    model_channels=32, cond_channels=12, num_blocks=2, num_heads=2, mlp_ratio=2.0, pe_mode="rope", share_mod=True,
    initialization="scaled", qk_rms_norm=True, qk_rms_norm_cross=True,
)


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter random values (default init zeroes the adaLN and output layers)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen) * std
            param.copy_(1.0 + noise if name.endswith("gamma") else noise)
    return module


def tiny_ss(**overrides) -> SparseStructureFlowModel:
    args = dict(TINY, resolution=4, in_channels=8, out_channels=8)
    args.update(overrides)
    return SparseStructureFlowModel(**args)


def tiny_slat(**overrides) -> SLatFlowModel:
    args = dict(TINY, resolution=8, in_channels=8, out_channels=8)
    args.update(overrides)
    return SLatFlowModel(**args)


def ragged_sparse(gen: torch.Generator, counts: list[int], side: int, channels: int) -> SparseTensor:
    coords = []
    for b, n in enumerate(counts):
        flat = torch.randperm(side**3, generator=gen)[:n].sort().values
        xyz = torch.stack([flat // side**2, (flat // side) % side, flat % side], dim=1)
        coords.append(torch.cat([torch.full((n, 1), b), xyz], dim=1))
    coords = torch.cat(coords).int()
    return SparseTensor(torch.randn(len(coords), channels, generator=gen), coords)


# ------------------------------------------------------------------------------------------- full size
@pytest.mark.parametrize("name", FLOW_CHECKPOINTS)
def test_full_size_state_dict_matches_manifest(name, released_checkpoint):
    entry = released_checkpoint(f"TRELLIS.2-4B/ckpts/{name}")
    with torch.device("meta"):
        model = CLASSES[entry["class"]](**entry["args"], dtype="bfloat16")  # the released json also has dtype
    state = model.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == entry["tensors"]
    assert len(state) == entry["num_tensors"] == 640
    assert set(state) == {n for n, _ in model.named_parameters()}  # no persistent buffers
    assert model.reference_dtype == torch.bfloat16
    assert model.blocks[0].mlp.mlp[0].out_features == 8192  # int(1536 * 5.3334)


def test_unknown_or_unsupported_args_rejected():
    with pytest.raises(TypeError):
        tiny_ss(use_fp16=True)
    with pytest.raises(CheckpointError):
        tiny_ss(pe_mode="ape")
    with pytest.raises(CheckpointError):
        tiny_slat(dtype="float64")


# ---------------------------------------------------------------------------------------- tiny forwards
def test_tiny_ss_forward_shape():
    model = randomize(tiny_ss()).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 4, 4, 4, generator=gen)
    out = model(x, torch.tensor([1000.0, 250.0]), torch.randn(2, 5, 12, generator=gen))
    assert out.shape == (2, 8, 4, 4, 4) and out.dtype == torch.float32
    assert out.abs().sum() > 0 and torch.isfinite(out).all()
    assert "rope_phases" not in model.state_dict() and model.rope_phases.shape == (64, 8)


def test_tiny_slat_forward_shape_and_concat_cond():
    gen = torch.Generator().manual_seed(1)
    x = ragged_sparse(gen, [5, 9], side=6, channels=4)
    cond = torch.randn(2, 3, 12, generator=gen)
    model = randomize(tiny_slat(in_channels=8, out_channels=4)).eval()
    shape_latent = x.replace(torch.randn(len(x), 4, generator=gen))
    out = model(x, torch.tensor([900.0, 100.0]), cond, concat_cond=shape_latent)
    assert isinstance(out, SparseTensor) and out.feats.shape == (14, 4) and out.coords is x.coords
    assert out.feats.dtype == torch.float32 and out.feats.abs().sum() > 0
    # concat_cond really enters: changing it changes the velocity
    other = model(x, torch.tensor([900.0, 100.0]), cond, concat_cond=shape_latent.replace(shape_latent.feats + 1))
    assert not torch.allclose(out.feats, other.feats)


def test_slat_batch_items_are_independent():
    gen = torch.Generator().manual_seed(2)
    x = ragged_sparse(gen, [6, 11, 3], side=5, channels=8)
    cond = torch.randn(3, 4, 12, generator=gen)
    t = torch.tensor([800.0, 500.0, 20.0])
    model = randomize(tiny_slat(), seed=3).eval()
    together = model(x, t, cond).feats
    for b, rows in enumerate(x.row_slices):
        coords = x.coords[rows].clone()
        coords[:, 0] = 0
        alone = model(SparseTensor(x.feats[rows], coords), t[b : b + 1], cond[b : b + 1]).feats
        torch.testing.assert_close(together[rows], alone, atol=1e-5, rtol=1e-5)


def test_dense_and_sparse_models_agree_on_full_grid():
    dense = randomize(tiny_ss(), seed=4).eval()
    sparse = tiny_slat().eval()
    sparse.load_state_dict(dense.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 4, 4, 4, generator=gen)
    cond = torch.randn(2, 7, 12, generator=gen)
    t = torch.tensor([640.0, 75.0])
    want = dense(x, t, cond)

    occupied = torch.ones(2, 4, 4, 4, dtype=torch.bool)
    coords = torch.argwhere(occupied).int()  # lexicographic (b, x, y, z) = dense token order
    feats = x.permute(0, 2, 3, 4, 1).reshape(-1, 8)
    got = sparse(SparseTensor(feats, coords), t, cond).feats
    torch.testing.assert_close(got, want.permute(0, 2, 3, 4, 1).reshape(-1, 8), atol=1e-5, rtol=1e-5)


def test_rope_freq_moves_only_the_slat_tables():
    """As the reference: the SS flow's RoPE table ignores `rope_freq`, the SLat flows' tables follow it."""
    custom = (2.0, 100.0)
    assert torch.equal(tiny_ss(rope_freq=custom).rope_phases, tiny_ss().rope_phases)
    x = ragged_sparse(torch.Generator().manual_seed(6), [5], side=4, channels=8)
    slat, custom_slat = tiny_slat(), tiny_slat(rope_freq=custom)
    assert not torch.equal(slat._phases(x), custom_slat._phases(x.replace(x.feats)))
    assert set(x.cache.rope_phases) == {RopeKey(16, (1.0, 10000.0)), RopeKey(16, custom)}  # one table per frequency


def test_zero_output_layer_gives_zero_velocity():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 8, 4, 4, 4, generator=gen)
    cond = torch.randn(1, 3, 12, generator=gen)
    fresh = tiny_ss()  # default init: adaLN-Zero and zero out_layer
    assert torch.equal(fresh(x, torch.tensor([500.0]), cond), torch.zeros_like(x))
    model = randomize(tiny_ss(), seed=7)
    with torch.no_grad():
        model.out_layer.weight.zero_()
        model.out_layer.bias.zero_()
    assert torch.equal(model(x, torch.tensor([500.0]), cond), torch.zeros_like(x))
    sparse = randomize(tiny_slat(), seed=8)
    with torch.no_grad():
        sparse.out_layer.weight.zero_()
        sparse.out_layer.bias.zero_()
    xs = ragged_sparse(gen, [4, 7], side=4, channels=8)
    assert torch.equal(sparse(xs, torch.tensor([1.0, 2.0]), torch.randn(2, 3, 12)).feats, torch.zeros(11, 8))


def test_share_mod_false_variant():
    model = randomize(tiny_slat(share_mod=False, initialization="vanilla"), seed=9).eval()
    keys = set(model.state_dict())
    assert "blocks.0.adaLN_modulation.1.weight" in keys and "adaLN_modulation.1.weight" not in keys
    assert "blocks.0.modulation" not in keys
    gen = torch.Generator().manual_seed(10)
    out = model(ragged_sparse(gen, [5], side=4, channels=8), torch.tensor([3.0]), torch.randn(1, 2, 12))
    assert out.feats.shape == (5, 8) and torch.isfinite(out.feats).all()


# ----------------------------------------------------------------------------------- precision policy
def test_precision_policy_dtypes_and_forward():
    model = randomize(tiny_ss(), seed=11).eval()
    # round the block weights to bf16 first, so fp32 vs bf16 differ only by the activations' precision
    model.apply_precision_policy(torch.bfloat16).apply_precision_policy(torch.float32)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(1, 8, 4, 4, 4, generator=gen)
    cond = torch.randn(1, 6, 12, generator=gen)
    t = torch.tensor([700.0])
    ref = model(x, t, cond)

    model.apply_precision_policy(torch.bfloat16)
    assert model.compute_dtype == torch.bfloat16
    for name, param in model.named_parameters():
        in_block_linear = name.startswith("blocks.") and any(
            part in name for part in ("to_qkv", "to_out", "to_q.", "to_kv", "mlp.mlp")
        )
        assert param.dtype == (torch.bfloat16 if in_block_linear else torch.float32), name
    assert model.rope_phases.dtype == torch.complex64
    out = model(x, t, cond)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.1, rtol=0.05)  # bf16 activations: close, not equal
    assert not torch.equal(out, ref)


@pytest.mark.filterwarnings("ignore:Casting complex values to real")
def test_rope_buffer_survives_dtype_cast_and_meta_build():
    model = randomize(tiny_ss(), seed=13).eval()
    x, cond, t = torch.randn(1, 8, 4, 4, 4), torch.randn(1, 3, 12), torch.tensor([10.0])
    ref = model(x, t, cond)
    with torch.device("meta"):
        meta = tiny_ss()
    meta.load_state_dict(model.state_dict(), assign=True)
    meta.init_buffers("cpu")
    torch.testing.assert_close(meta.eval()(x, t, cond), ref)
    model.to(torch.float64).to(torch.float32)  # Module.to casts complex buffers to real; forward recomputes
    torch.testing.assert_close(model(x, t, cond), ref)


# -------------------------------------------------------------------------------- cross-attention cache
def test_prepared_context_equals_raw_cond():
    model = randomize(tiny_ss(), seed=14).eval()
    gen = torch.Generator().manual_seed(15)
    x, cond = torch.randn(2, 8, 4, 4, 4, generator=gen), torch.randn(2, 5, 12, generator=gen)
    t = torch.tensor([1.0, 9.0])
    context = model.prepare_context(cond)
    assert isinstance(context, CrossContext) and not context.is_null and context.batch_size == 2
    torch.testing.assert_close(model(x, t, context), model(x, t, cond), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError):
        model(x[:1], t[:1], context)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_null_context_shortcut_equals_computed_attention(kind):
    gen = torch.Generator().manual_seed(16)
    if kind == "dense":
        model = randomize(tiny_ss(), seed=17).eval()
        x = torch.randn(2, 8, 4, 4, 4, generator=gen)
    else:
        model = randomize(tiny_slat(), seed=17).eval()
        x = ragged_sparse(gen, [5, 8], side=5, channels=8)
    zeros = torch.zeros(2, 9, 12)
    t = torch.tensor([600.0, 30.0])
    null = model.prepare_context(zeros)
    assert null.is_null and null.blocks[0].k is None
    # the per-block constant equals the computed cross-attention on zero tokens
    block = model.blocks[1]
    h = torch.randn(2, 4, 32, generator=gen)
    from know3d_cli.trellis2.nn.token_layout import DenseLayout

    computed = block.cross_attn(h, zeros, DenseLayout(2, 4))
    torch.testing.assert_close(computed, null.blocks[1].constant.expand_as(computed), atol=1e-6, rtol=1e-6)
    # and the whole model agrees (the shortcut must not assume anything about x)
    computed_out = model(x, t, zeros)
    shortcut_out = model(x, t, null)
    computed_out = computed_out.feats if kind == "sparse" else computed_out
    shortcut_out = shortcut_out.feats if kind == "sparse" else shortcut_out
    torch.testing.assert_close(shortcut_out, computed_out, atol=1e-5, rtol=1e-5)
    # a non-zero cond never takes the shortcut
    assert not model.prepare_context(zeros + 1e-3).is_null


# ------------------------------------------------------------------------------------------ small ops
def test_timestep_sinusoids_cos_first():
    emb = timestep_sinusoids(torch.tensor([0.0, 1000.0]), 256)
    assert emb.shape == (2, 256)
    assert torch.equal(emb[0, :128], torch.ones(128)) and torch.equal(emb[0, 128:], torch.zeros(128))
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(128) / 128)
    torch.testing.assert_close(emb[1, :128], torch.cos(1000.0 * freqs))


def test_multi_head_rms_norm():
    norm = MultiHeadRMSNorm(head_dim=4, num_heads=2)
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]]))
    x = torch.randn(3, 2, 4).bfloat16()
    out = norm(x)
    assert out.dtype == torch.bfloat16
    xf = x.float()
    want = xf / xf.norm(dim=-1, keepdim=True) * 2.0 * norm.gamma
    torch.testing.assert_close(out.float(), want, atol=1e-2, rtol=1e-2)


def test_sampler_with_cached_contexts_matches_raw_cond():
    from know3d_cli.trellis2.sampler import SamplerSettings, sample

    # shifted grid 1, .9, .75, .5, 0: all four steps guided
    settings = SamplerSettings(4, guidance_strength=3.0, guidance_rescale=0.5, guidance_interval=(0.5, 1.0),
                               rescale_t=3.0)
    model = randomize(tiny_slat(), seed=18).eval()
    gen = torch.Generator().manual_seed(19)
    noise = ragged_sparse(gen, [6, 4], side=4, channels=8)
    cond = torch.randn(2, 5, 12, generator=gen)

    def velocity(x, t, c):
        return model(x, t, c)

    raw = sample(velocity, noise, cond, torch.zeros_like(cond), settings)
    null = model.prepare_context(torch.zeros_like(cond))
    cached = sample(velocity, noise, model.prepare_context(cond), null, settings)
    assert null.is_null and raw.forwards == cached.forwards == 4 + 4
    torch.testing.assert_close(cached.x.feats, raw.x.feats, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(raw.x.feats, noise.feats)
