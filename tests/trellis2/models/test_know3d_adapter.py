"""Know3D adapter: exact no-op at zero init, separate state_dict, projection, gradients, fit checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from know3d_cli.errors import ConfigError
from know3d_cli.trellis2.models import EditorCondition, Know3dAdapter, SLatFlowModel, SparseStructureFlowModel
from know3d_cli.trellis2.models.know3d_adapter import sincos_position_embedding_2d
from know3d_cli.trellis2.sparse.tensor import SparseTensor

BASE = dict(
    model_channels=32, cond_channels=12, num_blocks=3, num_heads=2, mlp_ratio=2.0, pe_mode="rope", share_mod=True,
    initialization="vanilla", qk_rms_norm=True, qk_rms_norm_cross=True,
)


def randomize(module: torch.nn.Module, seed: int, std: float = 0.2, skip: tuple[str, ...] = ()) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if any(s in name for s in skip):
                continue
            noise = torch.randn(param.shape, generator=gen) * std
            param.copy_(1.0 + noise if name.endswith("gamma") else noise)
    return module


def tiny_adapter(blocks=(0, 2), pool: int = 1, seed: int = 0) -> Know3dAdapter:
    adapter = Know3dAdapter(ext_channels=20, proj_channels=16, model_channels=32, num_heads=2, blocks=blocks, pool=pool)
    # random everything except the zero-initialised output projections
    return randomize(adapter, seed, skip=("to_out",))


def ss_model(seed: int = 1) -> SparseStructureFlowModel:
    return randomize(SparseStructureFlowModel(resolution=4, in_channels=8, out_channels=8, **BASE), seed).eval()


def slat_model(seed: int = 2) -> SLatFlowModel:
    return randomize(SLatFlowModel(resolution=8, in_channels=8, out_channels=8, **BASE), seed).eval()


def sparse_input(gen: torch.Generator) -> SparseTensor:
    coords = torch.tensor(
        [[0, 0, 0, 1], [0, 1, 2, 3], [0, 3, 3, 0], [1, 0, 1, 1], [1, 2, 2, 2], [1, 2, 3, 1], [1, 4, 0, 0]]
    ).int()
    return SparseTensor(torch.randn(7, 8, generator=gen), coords)


def run(model, x, editor=None):
    t = torch.tensor([700.0, 40.0])
    cond = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(9))
    out = model(x, t, cond, editor=editor)
    return out.feats if isinstance(out, SparseTensor) else out


@pytest.mark.parametrize("kind", ["ss", "slat"])
@pytest.mark.parametrize("pool", [1, 2])
def test_zero_init_adapter_is_bit_identical(kind, pool):
    gen = torch.Generator().manual_seed(3)
    model = ss_model() if kind == "ss" else slat_model()
    x = torch.randn(2, 8, 4, 4, 4, generator=gen) if kind == "ss" else sparse_input(gen)
    adapter = tiny_adapter(pool=pool)
    tokens = torch.randn(2, 4, 6, 20, generator=gen)
    base = run(model, x)
    with_adapter = run(model, x, adapter.condition(tokens))
    assert torch.equal(with_adapter, base)
    # the zero-token CFG negative is a no-op too
    assert torch.equal(run(model, x, adapter.condition(torch.zeros_like(tokens))), base)

    with torch.no_grad():
        adapter.editor_attention(2).to_out.weight.normal_(0, 0.5, generator=gen)
    changed = run(model, x, adapter.condition(tokens))
    assert not torch.allclose(changed, base)
    assert torch.isfinite(changed).all()


def test_zero_init_adapter_is_identical_under_the_precision_policy():
    gen = torch.Generator().manual_seed(5)
    model = ss_model().apply_precision_policy(torch.bfloat16)
    x = torch.randn(2, 8, 4, 4, 4, generator=gen)
    tokens = torch.randn(2, 2, 2, 20, generator=gen)
    base = run(model, x)
    assert torch.equal(run(model, x, tiny_adapter().condition(tokens)), base)  # fp32 adapter on bf16 blocks
    adapter = tiny_adapter().apply_precision_policy(torch.bfloat16)
    assert adapter.editor_attention(0).to_q.weight.dtype == torch.bfloat16
    assert adapter.ext_proj[1].weight.dtype == torch.float32
    assert adapter.editor_attention(0).norm.weight.dtype == torch.float32
    assert torch.equal(run(model, x, adapter.condition(tokens)), base)


def test_adapter_has_only_its_own_keys_and_base_is_untouched():
    model = ss_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapter = tiny_adapter(blocks=(1,))
    keys = set(adapter.state_dict())
    assert keys and all(k.startswith("ext_proj.") or k.startswith("blocks.1.ext_attn.") for k in keys)
    assert {k.rsplit(".", 1)[0] for k in keys if k.startswith("blocks.")} == {
        "blocks.1.ext_attn.norm", "blocks.1.ext_attn.to_q", "blocks.1.ext_attn.to_kv", "blocks.1.ext_attn.to_out",
        "blocks.1.ext_attn.q_rms_norm", "blocks.1.ext_attn.k_rms_norm",
    }
    assert {k for k in keys if k.startswith("ext_proj.")} == {
        "ext_proj.0.weight", "ext_proj.0.bias", "ext_proj.1.weight", "ext_proj.1.bias", "ext_proj.3.weight",
        "ext_proj.3.bias",
    }
    with torch.no_grad():
        adapter.editor_attention(1).to_out.weight.fill_(0.1)
    run(model, torch.randn(2, 8, 4, 4, 4), adapter.condition(torch.randn(2, 2, 2, 20)))
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not any("ext" in name for name, _ in model.named_modules())


def test_fresh_adapter_out_projection_is_zero_and_config_round_trips():
    adapter = Know3dAdapter(ext_channels=20, proj_channels=16, model_channels=32, num_heads=2, blocks=[2, 0], pool=2)
    for i in (0, 2):
        layer = adapter.editor_attention(i)
        assert torch.count_nonzero(layer.to_out.weight) == 0 and torch.count_nonzero(layer.to_out.bias) == 0
    assert adapter.editor_attention(1) is None
    config = adapter.config()
    assert config == {
        "ext_channels": 20, "proj_channels": 16, "model_channels": 32, "num_heads": 2, "blocks": [0, 2], "pool": 2,
        "qk_rms_norm": True,
    }
    rebuilt = Know3dAdapter(**config)
    rebuilt.load_state_dict(adapter.state_dict(), strict=True)


def test_default_adapter_matches_released_model_size():
    with torch.device("meta"):
        adapter = Know3dAdapter()
    state = adapter.state_dict()
    assert state["ext_proj.1.weight"].shape == (1024, 3072)
    assert state["blocks.29.ext_attn.to_kv.weight"].shape == (3072, 1024)
    assert state["blocks.0.ext_attn.q_rms_norm.gamma"].shape == (12, 128)
    assert len([k for k in state if k.startswith("blocks.")]) == 30 * 10


def test_projection_pooling_and_position_embedding():
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randn(2, 4, 6, 20, generator=gen)
    pooled = tiny_adapter(pool=2)
    out = pooled.project(tokens)
    assert out.shape == (2, 2 * 3, 16)
    manual = F.avg_pool2d(tokens.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).reshape(2, 6, 20)
    torch.testing.assert_close(out, pooled.ext_proj(manual) + sincos_position_embedding_2d(2, 3, 16))
    # zero tokens still carry the grid positions
    zero = pooled.project(torch.zeros_like(tokens))
    assert not torch.allclose(zero[:, 0], zero[:, 1])
    with pytest.raises(ConfigError):
        pooled.project(torch.randn(1, 3, 4, 20))
    pos = sincos_position_embedding_2d(2, 3, 16)
    assert pos.shape == (6, 16)
    torch.testing.assert_close(pos[0], torch.cat([torch.zeros(4), torch.ones(4), torch.zeros(4), torch.ones(4)]))


def test_gradients_reach_only_the_adapter():
    model = ss_model()
    model.requires_grad_(False)
    adapter = tiny_adapter(blocks=(0, 1, 2))
    x = torch.randn(2, 8, 4, 4, 4)
    loss = run(model, x, adapter.condition(torch.randn(2, 2, 2, 20))).square().mean()
    loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(adapter.editor_attention(i).to_out.weight.grad.abs().sum() > 0 for i in (0, 1, 2))


def test_adapter_must_fit_the_model():
    model = ss_model()
    x = torch.randn(2, 8, 4, 4, 4)
    wrong_width = Know3dAdapter(ext_channels=20, proj_channels=16, model_channels=48, num_heads=2, blocks=[0])
    with pytest.raises(ConfigError):
        run(model, x, wrong_width.condition(torch.randn(2, 2, 2, 20)))
    too_deep = Know3dAdapter(ext_channels=20, proj_channels=16, model_channels=32, num_heads=2, blocks=[5])
    with pytest.raises(ConfigError):
        run(model, x, too_deep.condition(torch.randn(2, 2, 2, 20)))
    with pytest.raises(ValueError):
        run(model, x, tiny_adapter().condition(torch.randn(1, 2, 2, 20)))  # batch mismatch
    assert isinstance(tiny_adapter().condition(torch.randn(2, 2, 2, 20)), EditorCondition)
