"""`Residency`: the one offload policy, applied in the declared order of use, owning the GPU cache release."""

from __future__ import annotations

import pytest
import torch

from know3d_cli.trellis2 import Offload, Residency, Trellis2Pipeline


class Network:
    """Records where it is sent."""

    def __init__(self):
        self.moves: list[str] = []

    def to(self, device):
        self.moves.append(str(torch.device(device)))
        return self


def test_sequential_offload_on_cuda_parks_networks_and_frees_the_cache(monkeypatch):
    freed = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    residency = Residency("cuda", Offload.sequential, ["flow", "decoder"])
    assert residency.offloading and residency.home == torch.device("cpu")
    flow, adapter, decoder = Network(), Network(), Network()
    with residency.on_device("flow", flow, adapter):
        assert flow.moves == adapter.moves == ["cuda"]
    with residency.on_device("decoder", decoder):
        pass
    assert flow.moves == adapter.moves == decoder.moves[:1] + ["cpu"] == ["cuda", "cpu"]
    assert len(freed) == 2  # once after each stage


@pytest.mark.parametrize("device, offload", [("cpu", Offload.sequential), ("cuda", Offload.none)])
def test_without_offloading_networks_stay_on_the_device(monkeypatch, device, offload):
    freed = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))
    residency = Residency(device, offload, ["flow"])
    assert not residency.offloading and residency.home == torch.device(device)
    flow = Network()
    with residency.on_device("flow", flow):
        pass
    assert flow.moves == [device] and freed == []


def test_networks_are_used_in_the_declared_order():
    residency = Residency("cpu", Offload.none, ["encoder", "flow", "decoder", "flow_hr", "decoder"])
    for name in ("encoder", "flow", "decoder", "decoder", "flow_hr", "decoder"):  # skips and repeats are fine
        with residency.on_device(name, Network()):
            pass
    with pytest.raises(ValueError, match="out of the declared order"):
        with residency.on_device("flow", Network()):
            pass
    with pytest.raises(ValueError, match="not in the declared sequence"):
        with residency.on_device("vae", Network()):
            pass
    residency.start_run()  # a new run starts over
    with residency.on_device("flow", Network()):
        pass


def test_the_pipeline_declares_every_network_it_loads():
    from know3d_cli.trellis2.pipeline_spec import MODEL_KEYS

    assert set(Trellis2Pipeline.model_offload_sequence) == set(MODEL_KEYS) | {"image_cond_model"}
