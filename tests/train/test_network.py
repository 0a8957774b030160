"""The trained module: gradient checkpointing changes nothing but memory; a frozen base gets no gradient."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.tiny.trellis2 import dit_args
from know3d_cli.train.models import Know3dAdapter
from know3d_cli.train.network import FlowTrainingModule, PerBlockEditorCondition
from know3d_cli.trellis2.models import SLatFlowModel
from know3d_cli.trellis2.sparse.tensor import SparseTensor


def make(adapter: bool, checkpointing: bool) -> FlowTrainingModule:
    torch.manual_seed(0)
    flow = SLatFlowModel(**{**dit_args("shape_slat_flow_model_512"), "dtype": "float32"})
    with torch.no_grad():  # adaLN-Zero / zero output layers would hide the blocks
        for p in flow.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    ext = Know3dAdapter(ext_channels=6, proj_channels=8, model_channels=32, num_heads=2, blocks=(0, 1)) if adapter \
        else None
    if ext is not None:
        with torch.no_grad():
            for block in ext.blocks.values():
                block["ext_attn"].to_out.weight.normal_(0.0, 0.1)
    return FlowTrainingModule(flow, ext, gradient_checkpointing=checkpointing)


def inputs():
    gen = torch.Generator().manual_seed(1)
    coords = torch.cat([torch.tensor([0] * 5 + [1] * 3)[:, None], torch.randint(0, 8, (8, 3), generator=gen)], 1)
    return (torch.randn(8, 32, generator=gen), torch.tensor([300.0, 800.0]), torch.randn(2, 4, 32, generator=gen),
            torch.randn(2, 2, 2, 6, generator=gen), coords.int())


@pytest.mark.parametrize("adapter", [True, False])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(adapter, one_thread):
    results = []
    for checkpointing in (False, True):
        module = make(adapter, checkpointing).train()
        x, t, cond, ext, coords = inputs()
        loss = module(x, t, cond, ext if adapter else None, coords).square().mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0])
    assert results[0][1].keys() == results[1][1].keys() and results[0][1]
    for name in results[0][1]:
        torch.testing.assert_close(results[0][1][name], results[1][1][name], msg=name)


def test_with_an_adapter_only_the_adapter_trains(one_thread):
    module = make(adapter=True, checkpointing=True).train()
    assert not module.flow.training  # the frozen base stays in eval mode
    x, t, cond, ext, coords = inputs()
    module(x, t, cond, ext, coords).square().mean().backward()
    assert all(p.grad is None for p in module.flow.parameters())
    assert all(p.grad is not None for p in module.adapter.parameters())
    assert module.trainable() is module.adapter


def test_a_fresh_adapter_leaves_the_flow_unchanged(one_thread):
    module = make(adapter=False, checkpointing=False)
    fresh = Know3dAdapter(ext_channels=6, proj_channels=8, model_channels=32, num_heads=2, blocks=(0, 1))
    x, t, cond, ext, coords = inputs()
    with torch.no_grad():
        base = module(x, t, cond, None, coords)
        with_adapter = FlowTrainingModule(module.flow, fresh, False)(x, t, cond, ext, coords)
    assert torch.equal(base, with_adapter)
    with pytest.raises(ValueError):
        FlowTrainingModule(module.flow, fresh, False)(x, t, cond, None, coords)


def test_per_block_keys_and_values_equal_the_inference_conditioning(one_thread):
    module = make(adapter=True, checkpointing=False)
    x, t, cond, ext, coords = inputs()
    with torch.no_grad():
        lazy = module.flow(SparseTensor(x, coords), t, cond, editor=PerBlockEditorCondition(module.adapter, ext)).feats
        eager = module.flow(SparseTensor(x, coords), t, cond, editor=module.adapter.condition(ext)).feats
    assert torch.equal(lazy, eager)
