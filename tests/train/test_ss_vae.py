"""Sparse-structure VAE training: the objective (upstream's reconstruction terms + KL), its noise, and that it learns."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.train.ss_vae import (
    OccupancyBatch,
    SsVaeInputs,
    SsVaeObjective,
    SsVaeTrainingModule,
    draw_vae_inputs,
    soft_dice_loss,
)
from know3d_cli.train_config import SsVaeLoss
from know3d_cli.trellis2.models.sparse_structure_decoder import SparseStructureDecoder
from know3d_cli.trellis2.models.sparse_structure_encoder import SparseStructureEncoder

SIDE = 16  # a small grid: the networks take any multiple of their downsampling factor


def small_vae(seed: int = 0) -> SsVaeTrainingModule:
    torch.manual_seed(seed)
    encoder = SparseStructureEncoder(in_channels=1, latent_channels=4, num_res_blocks=1, channels=[4, 8],
                                     num_res_blocks_middle=1)
    decoder = SparseStructureDecoder(out_channels=1, latent_channels=4, num_res_blocks=1, num_res_blocks_middle=1,
                                     channels=[8, 4])
    return SsVaeTrainingModule(encoder, decoder)


def two_shapes() -> torch.Tensor:
    """(2, 1, 16, 16, 16): a box shell and a ball."""
    grid = torch.zeros(2, 1, SIDE, SIDE, SIDE)
    grid[0, 0, 3:13, 4:12, 5:11] = 1.0
    grid[0, 0, 4:12, 5:11, 6:10] = 0.0
    x, y, z = torch.meshgrid(*[torch.arange(SIDE, dtype=torch.float32)] * 3, indexing="ij")
    grid[1, 0] = (((x - 8) ** 2 + (y - 7) ** 2 + (z - 9) ** 2) < 20).float()
    return grid


def test_a_fixed_batch_is_overfitted(one_thread):
    model = small_vae()
    objective = SsVaeObjective(SsVaeLoss.bce, lambda_kl=1e-6)
    grid = two_shapes()
    inputs = SsVaeInputs(grid, torch.zeros(2, *model.latent_shape(SIDE)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        value, per_sample = objective(model, inputs)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
        assert per_sample.shape == (2,) and not per_sample.requires_grad
    assert losses[-1] < 0.5 * losses[0], losses


def test_terms_match_their_formulas():
    prob = torch.tensor([0.9, 0.2, 0.6, 0.0])
    target = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert soft_dice_loss(prob, target).item() == pytest.approx(1 - (2 * 1.5 + 1) / (1.7 + 2 + 1))
    model = small_vae()
    inputs = SsVaeInputs(two_shapes(), torch.zeros(2, *model.latent_shape(SIDE)))
    with torch.no_grad():
        logits, mean, logvar = model(inputs.grid, inputs.noise)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, inputs.grid)
        kl = 0.5 * (mean**2 + logvar.exp() - logvar - 1).mean()
        for weight in (0.0, 10.0):
            loss, per_sample = SsVaeObjective(SsVaeLoss.bce, weight)(model, inputs)
            assert loss.item() == pytest.approx((bce + weight * kl).item(), rel=1e-5)
            assert per_sample.mean().item() == pytest.approx(loss.item(), rel=1e-5)


def test_posterior_noise_is_keyed_by_step_and_slot():
    batch = OccupancyBatch(["a", "b"], [0, 1], two_shapes())
    first = draw_vae_inputs(batch, 3, 7, (4, 4, 4, 4), torch.device("cpu"))
    again = draw_vae_inputs(OccupancyBatch(["b"], [1], two_shapes()[1:]), 3, 7, (4, 4, 4, 4), torch.device("cpu"))
    torch.testing.assert_close(first.noise[1:], again.noise, rtol=0, atol=0)
    assert not torch.equal(first.noise[0], first.noise[1])
    later = draw_vae_inputs(batch, 4, 7, (4, 4, 4, 4), torch.device("cpu"))
    assert not torch.equal(first.noise, later.noise)
