"""Per-sample randomness and condition dropout of a micro-batch (`train/batch.py`)."""

from __future__ import annotations

import math

import pytest
import torch

from know3d_cli.train.batch import collate, draw_inputs
from know3d_cli.train.dataset import TrainingSample
from know3d_cli.train.flow_matching import FlowMatching
from know3d_cli.train_config import TimeSchedule

OBJECTIVE = FlowMatching(1e-5, TimeSchedule.logit_normal, 1.0, 1.0)


def dense_samples(count: int, start_slot: int = 0) -> list[TrainingSample]:
    gen = torch.Generator().manual_seed(1)
    return [TrainingSample(f"s{i}", torch.randn(2, 2, 2, 2, generator=gen), None,
                           torch.randn(5, 4, generator=gen) + 3.0, torch.randn(2, 2, 2, 3, generator=gen) + 3.0,
                           start_slot + i) for i in range(count)]


@pytest.mark.parametrize("p_dino,p_ext", [(0.3, 0.1), (0.0, 0.5)])
def test_condition_dropout_zeroes_whole_samples_at_the_configured_rates(p_dino, p_ext):
    samples = dense_samples(3000)
    batch = collate(samples)
    inputs = draw_inputs(batch, step=5, seed=0, objective=OBJECTIVE, p_uncond=p_dino, p_uncond_editor=p_ext,
                         device=torch.device("cpu"))
    dropped, editor_dropped = inputs.dino_dropped, inputs.editor_dropped
    # dropped rows are exactly zero, kept rows are the tokens unchanged (they are never zero here)
    assert (inputs.cond[dropped] == 0).all() and not (inputs.cond[~dropped] == 0).any()
    torch.testing.assert_close(inputs.cond[~dropped], batch.dino[~dropped])
    assert (inputs.editor_tokens[editor_dropped] == 0).all() and not (inputs.editor_tokens[~editor_dropped] == 0).any()
    n = len(samples)
    for observed, p in ((dropped.float().mean().item(), p_dino), (editor_dropped.float().mean().item(), p_ext)):
        assert abs(observed - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9
    both = (dropped & editor_dropped).float().mean().item()  # independent draws
    assert abs(both - p_dino * p_ext) <= 4 * math.sqrt(max(p_dino * p_ext, 1e-4) / n)


def test_a_samples_noise_t_and_dropout_depend_only_on_seed_step_and_slot():
    alone = draw_inputs(collate(dense_samples(1, start_slot=3)), 7, 11, OBJECTIVE, 0.5, 0.5, torch.device("cpu"))
    many = draw_inputs(collate(dense_samples(4, start_slot=0)), 7, 11, OBJECTIVE, 0.5, 0.5, torch.device("cpu"))
    assert alone.t[0] == many.t[3] and alone.dino_dropped[0] == many.dino_dropped[3]
    other_step = draw_inputs(collate(dense_samples(1, start_slot=3)), 8, 11, OBJECTIVE, 0.5, 0.5,
                             torch.device("cpu"))
    assert other_step.t[0] != alone.t[0]


def test_sparse_batches_pack_rows_sample_after_sample():
    gen = torch.Generator().manual_seed(2)
    samples = [TrainingSample(f"s{i}", torch.randn(n, 4, generator=gen), torch.randint(0, 8, (n, 3)).int(),
                              torch.randn(5, 4, generator=gen), None, i) for i, n in enumerate((3, 5))]
    batch = collate(samples)
    assert batch.coords[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1] and batch.counts == [3, 5]
    inputs = draw_inputs(batch, 0, 0, OBJECTIVE, 0.0, 0.0, torch.device("cpu"))
    assert inputs.rows == [slice(0, 3), slice(3, 8)] and inputs.editor_tokens is None
    # each sample's rows are noised at its own t
    t_rows = torch.repeat_interleave(inputs.t, torch.tensor([3, 5]))[:, None]
    noise = (inputs.x_t - (1 - t_rows) * batch.latent) / (1e-5 + (1 - 1e-5) * t_rows)
    torch.testing.assert_close(inputs.target, (1 - 1e-5) * noise - batch.latent, atol=1e-4, rtol=1e-4)
