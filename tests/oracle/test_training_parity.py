"""Parity with upstream TRELLIS.2's flow-matching trainers (`trellis.trainers.flow_matching`, CPU, fp32): on the same
batch, t and noise, its `training_losses` and ours give the same loss and the same per-t-bin losses; its `sample_t`
and ours draw the same t from the same seed."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from know3d_cli.tiny.trellis2 import dit_args
from know3d_cli.train.batch import ModelInputs
from know3d_cli.train.flow_matching import FlowMatching, t_bin_means, training_loss
from know3d_cli.train.network import FlowTrainingModule
from know3d_cli.train_config import TimeScheduleConfig
from know3d_cli.trellis2.models import SLatFlowModel, SparseStructureFlowModel
from know3d_cli.trellis2.sparse.tensor import SparseTensor

from .conftest import _import_with_stubs
from .test_sparse_parity import coords, randomise, upstream_copy, upstream_sparse

SIGMA_MIN = 1e-5
SCHEDULES = {"ss": ("logitNormal", {"mean": 1.0, "std": 1.0}), "shape": ("uniform", {})}


class _EasyDict(dict):
    """Upstream returns its loss terms in an EasyDict (not installed here): a dict with attribute access."""

    __getattr__ = dict.__getitem__
    __setattr__ = dict.__setitem__


@pytest.fixture(scope="module")
def trainers():
    easydict = types.ModuleType("easydict")
    easydict.EasyDict = _EasyDict
    saved = sys.modules.get("easydict")
    sys.modules["easydict"] = easydict
    # transformers (imported by upstream's image-conditioning mixin) probes for flash_attn by its import spec, which
    # the CPU stand-in installed by `reference_ops` lacks; the trainers never call it
    flash = sys.modules.pop("flash_attn", None)
    try:
        _import_with_stubs("trellis.trainers.flow_matching.flow_matching")
        _import_with_stubs("trellis.trainers.flow_matching.sparse_flow_matching")
    finally:
        if flash is not None:
            sys.modules["flash_attn"] = flash
    from trellis.trainers.flow_matching.flow_matching import FlowMatchingTrainer
    from trellis.trainers.flow_matching.sparse_flow_matching import SparseFlowMatchingTrainer

    yield FlowMatchingTrainer, SparseFlowMatchingTrainer
    if saved is None:
        sys.modules.pop("easydict", None)
    else:
        sys.modules["easydict"] = saved


def upstream_trainer(cls, denoiser: torch.nn.Module, schedule: str):
    """The trainer's loss machinery without its data/DDP set-up (its __init__ needs GPUs and a dataset)."""
    trainer = object.__new__(cls)
    name, args = SCHEDULES[schedule]
    trainer.t_schedule = {"name": name, "args": args}
    trainer.sigma_min = SIGMA_MIN
    trainer.training_models = {"denoiser": denoiser}
    return trainer


def ours(schedule: str) -> FlowMatching:
    name, args = SCHEDULES[schedule]
    return FlowMatching.from_config(SIGMA_MIN, TimeScheduleConfig(
        "logit_normal" if name == "logitNormal" else "uniform", args.get("mean", 0.0), args.get("std", 1.0)))


def our_terms(flow, schedule: str, x0, noise, t, t_broadcast, cond, coords=None, rows=None):
    """Our loss and per-t-bin losses for given x0, noise and t (what `Trainer.optimize` computes)."""
    objective = ours(schedule)
    kept = torch.zeros(len(t), dtype=torch.bool)
    inputs = ModelInputs(objective.diffuse(x0, noise, t_broadcast), t, objective.target(x0, noise), cond, None,
                         coords, rows, kept, kept)
    with torch.no_grad():
        loss, per_sample = training_loss(FlowTrainingModule(flow, None, False), objective, inputs)
    return loss, t_bin_means(t.numpy(), per_sample.numpy())


def assert_same_terms(terms, loss, bins, tol: float) -> None:
    torch.testing.assert_close(loss, terms["loss"], atol=tol, rtol=tol)
    expected = {key[len("bin_"):]: float(value["mse"]) for key, value in terms.items() if key.startswith("bin_")}
    assert bins.keys() == expected.keys()
    np.testing.assert_allclose([bins[k] for k in bins], [expected[k] for k in bins], rtol=10 * tol)


@pytest.mark.parametrize("schedule", ["ss", "shape"])
def test_sample_t_matches_upstream(trainers, schedule):
    trainer = upstream_trainer(trainers[0], None, schedule)
    for seed in range(5):
        torch.manual_seed(seed)
        expected = float(trainer.sample_t(1)[0])
        assert ours(schedule).sample_t(torch.Generator().manual_seed(seed)) == pytest.approx(expected, abs=1e-7)


def test_dense_loss_matches_upstream(trainers):
    args = {**dit_args("sparse_structure_flow_model", cond_channels=16), "resolution": 8, "dtype": "float32"}
    flow = randomise(SparseStructureFlowModel(**args), seed=4, std=0.05)
    flow.init_buffers("cpu")
    gen = torch.Generator().manual_seed(5)
    x0, cond = torch.randn(4, 8, 8, 8, 8, generator=gen), torch.randn(4, 7, 16, generator=gen)
    trainer = upstream_trainer(trainers[0], flow, "ss")
    torch.manual_seed(6)  # upstream draws the noise, then t, from the global generator
    with torch.no_grad():
        terms, _ = trainer.training_losses(x0, cond)
    torch.manual_seed(6)
    noise = torch.randn_like(x0)
    t = trainer.sample_t(4).float()

    loss, bins = our_terms(flow, "ss", x0, noise, t, t.view(-1, 1, 1, 1, 1), cond)
    assert_same_terms(terms, loss, bins, tol=1e-6)


def test_sparse_loss_matches_upstream(trainers):
    from trellis.models.structured_latent_flow import SLatFlowModel as Upstream

    args = {**dit_args("shape_slat_flow_model_512", cond_channels=16), "dtype": "float32"}
    flow = randomise(SLatFlowModel(**args), seed=7, std=0.05)
    upstream = upstream_copy(Upstream, args, flow)
    c = coords(batch=3, seed=8)
    gen = torch.Generator().manual_seed(9)
    x0 = SparseTensor(torch.randn(len(c), 32, generator=gen), c)
    cond = torch.randn(3, 5, 16, generator=gen)
    trainer = upstream_trainer(trainers[1], upstream, "shape")
    torch.manual_seed(10)
    with torch.no_grad():
        terms, _ = trainer.training_losses(upstream_sparse(x0), cond)
    torch.manual_seed(10)
    noise = torch.randn_like(x0.feats)
    t = trainer.sample_t(3).float()

    loss, bins = our_terms(flow, "shape", x0.feats, noise, t, t[x0.batch_index][:, None], cond, c, x0.row_slices)
    assert_same_terms(terms, loss, bins, tol=1e-5)
