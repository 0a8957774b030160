import torch

from know3d_cli.trellis2.cascade import (
    LatentNormalization,
    cap_resolution,
    occupancy_coords,
    quantize_coords,
)


def test_occupancy_coords_lexicographic_and_pooled():
    logits = torch.full((1, 1, 64, 64, 64), -1.0)
    logits[0, 0, 3, 5, 7] = 1.0
    logits[0, 0, 2, 60, 1] = 1.0
    full = occupancy_coords(logits, 64)
    assert full.dtype == torch.int32
    assert full.tolist() == [[0, 2, 60, 1], [0, 3, 5, 7]]
    pooled = occupancy_coords(logits, 32)
    assert pooled.tolist() == [[0, 1, 2, 3], [0, 1, 30, 0]]


def test_quantize_coords_maps_cells_and_deduplicates():
    coords = torch.tensor([[0, 0, 0, 0], [0, 7, 7, 7], [0, 8, 0, 511], [1, 0, 0, 0]], dtype=torch.int32)
    hr = quantize_coords(coords, 512, 64)
    # voxels 0..7 of the 512 grid fall in latent cell 0, 8..15 in cell 1, 511 in cell 63
    assert hr.tolist() == [[0, 0, 0, 0], [0, 1, 0, 63], [1, 0, 0, 0]]


def test_token_cap_lowers_1536_in_steps_of_128_but_never_1024():
    g = torch.arange(0, 512, 2)
    xyz = torch.cartesian_prod(g, g[:40], torch.tensor([0, 256]))
    coords = torch.cat([torch.zeros(len(xyz), 1, dtype=torch.int64), xyz], 1).int()
    cap = quantize_coords(coords, 512, 1536 // 16).shape[0]  # exactly at the cap: must be lowered
    hr, res, requested = cap_resolution(coords, 512, 1536, max_tokens=cap)
    assert res < 1536 and (1536 - res) % 128 == 0 and requested == cap
    assert hr.shape[0] < cap
    assert quantize_coords(coords, 512, (res + 128) // 16).shape[0] >= cap  # the step above was over the cap
    hr, res, requested = cap_resolution(coords, 512, 1024, max_tokens=10)
    assert res == 1024 and hr.shape[0] == requested >= 10


def test_latent_normalization_round_trip():
    norm = LatentNormalization(torch.tensor([1.0, -2.0]), torch.tensor([2.0, 0.5]))
    x = torch.randn(5, 2)
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x)
    torch.testing.assert_close(norm.normalize(torch.tensor([[1.0, -2.0]])), torch.zeros(1, 2))


def test_a_lowered_cascade_reports_the_tokens_at_the_requested_resolution():
    from know3d_cli.trellis2.stages import cascade_coords

    g = torch.arange(0, 512, 2)
    xyz = torch.cartesian_prod(g, g[:40], torch.tensor([0, 256]))
    fine = torch.cat([torch.zeros(len(xyz), 1, dtype=torch.int64), xyz], 1).int()
    at_1536 = quantize_coords(fine, 512, 1536 // 16).shape[0]

    class Decoder:  # the shape decoder's first levels, reduced to the coords they return
        def upsample(self, latent, levels):
            assert levels == 4
            return fine

    high = cascade_coords(Decoder(), None, ss_grid=32, resolution=1536, max_num_tokens=at_1536)
    assert high.lowered and high.resolution < 1536 and high.coords.shape[0] < at_1536
    assert high.requested_tokens == at_1536
    assert high.warning.startswith(f"{at_1536} tokens at 1536 would exceed trellis2.max_num_tokens={at_1536}; ")
    assert high.warning.endswith(f"generated at {high.resolution} instead")
    assert cascade_coords(Decoder(), None, ss_grid=32, resolution=1536, max_num_tokens=10**9).warning is None
