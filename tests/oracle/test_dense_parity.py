"""Parity with upstream TRELLIS.2 for the dense networks: sparse-structure flow and decoder (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.tiny.trellis2 import dit_args, ss_decoder_args
from know3d_cli.trellis2.models import SparseStructureDecoder, SparseStructureFlowModel

TOL = dict(atol=1e-5, rtol=1e-5)


def _upstream(cls, args: dict, ours: torch.nn.Module) -> torch.nn.Module:
    """The upstream network with the same args, holding our weights (strict: the key names must match)."""
    torch.manual_seed(0)
    model = cls(**{**args, "dtype": "float32"} if "dtype" in args else args).eval()
    state = ours.state_dict()
    computed = {k: v for k, v in model.state_dict().items() if k not in state}
    assert set(computed) <= {"rope_phases"}, f"upstream has keys we lack: {sorted(computed)}"
    model.load_state_dict({**state, **computed}, strict=True)  # upstream keeps its RoPE table as a buffer
    return model


def test_sparse_structure_decoder_matches_upstream():
    from trellis.models.sparse_structure_vae import SparseStructureDecoder as Upstream

    args = {**ss_decoder_args(), "use_fp16": False}
    torch.manual_seed(1)
    ours = SparseStructureDecoder(**args).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0.0, 0.2)
    upstream = _upstream(Upstream, args, ours)
    x = torch.randn(2, args["latent_channels"], 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), upstream(x), **TOL)


@pytest.fixture(scope="module")
def ss_flows():
    from trellis.models.sparse_structure_flow import SparseStructureFlowModel as Upstream

    args = {**dit_args("sparse_structure_flow_model", cond_channels=16), "resolution": 8, "dtype": "float32"}
    torch.manual_seed(2)
    ours = SparseStructureFlowModel(**args).eval()
    with torch.no_grad():  # adaLN-Zero and the zero output layer would make every output 0
        for p in ours.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    ours.init_buffers("cpu")
    return ours, _upstream(Upstream, args, ours)


def test_sparse_structure_flow_matches_upstream(ss_flows):
    ours, upstream = ss_flows
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 8, 8, 8, generator=gen)
    t = torch.tensor([900.0, 250.0])
    cond = torch.randn(2, 7, 16, generator=gen)
    with torch.no_grad():
        expected = upstream(x, t, cond)
        torch.testing.assert_close(ours(x, t, cond), expected, **TOL)
        torch.testing.assert_close(ours(x, t, ours.prepare_context(cond)), expected, **TOL)  # cached keys/values


def test_sparse_structure_flow_ignores_rope_freq_like_upstream():
    """Upstream builds the SS flow's RoPE table with the default (1, 10000) whatever `rope_freq` says (its blocks get
    the value but use the model's table); the SLat flows honour it (test_sparse_parity)."""
    from trellis.models.sparse_structure_flow import SparseStructureFlowModel as Upstream

    args = {**dit_args("sparse_structure_flow_model", cond_channels=16), "resolution": 8, "dtype": "float32",
            "rope_freq": (2.0, 100.0)}
    torch.manual_seed(5)
    ours = SparseStructureFlowModel(**args).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0.0, 0.05)
    ours.init_buffers("cpu")
    upstream = _upstream(Upstream, args, ours)
    gen = torch.Generator().manual_seed(6)
    x, cond = torch.randn(1, 8, 8, 8, 8, generator=gen), torch.randn(1, 7, 16, generator=gen)
    t = torch.tensor([700.0])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, cond), upstream(x, t, cond), **TOL)


def test_zero_condition_shortcut_equals_upstream_attention(ss_flows):
    ours, upstream = ss_flows
    x = torch.randn(1, 8, 8, 8, 8, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([600.0])
    zeros = torch.zeros(1, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, ours.null_context()), upstream(x, t, zeros), **TOL)
