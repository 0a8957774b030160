"""Where networks live between the stages that use them: one policy, with the order of use declared as data.

A pipeline declares the order in which a run uses its networks, like diffusers' `model_cpu_offload_seq`
(`Trellis2Pipeline.model_offload_sequence`), and wraps every use in `Residency.on_device(name, *modules)`. With
`Offload.sequential` on a GPU the networks wait on the CPU and only the ones in use are on the GPU, so peak GPU
memory is one stage's networks plus its activations; with `Offload.none` they are loaded on the compute device and
stay there. Within a run, a use out of the declared order is refused, so the declared order is the order that runs.

The app applies the same policy to its stages' models (`know3d_cli/stage_models.py`), so this is the only place in
the package that returns freed GPU memory to the driver (`torch.cuda.empty_cache`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import torch

from .backends import Offload

logger = logging.getLogger(__name__)


class Movable(Protocol):
    """A network, or anything that moves like one (`DinoV3Conditioner`, a diffusers pipeline)."""

    def to(self, *args, **kwargs): ...  # noqa: E704


class Residency:
    """The residency policy of one pipeline.

    Args:
        device: the compute device.
        offload: the policy; `sequential` only offloads on CUDA (on a CPU everything already is "home").
        sequence: network names in the order a run uses them; a name may appear more than once.
    """

    def __init__(self, device: torch.device | str, offload: Offload, sequence: Sequence[str]):
        self.device = torch.device(device)
        self.offload = offload
        self.sequence = tuple(sequence)
        self._position = 0

    @property
    def offloading(self) -> bool:
        return self.device.type == "cuda" and self.offload is Offload.sequential

    @property
    def home(self) -> torch.device:
        """Where networks are loaded and wait between their uses."""
        return torch.device("cpu") if self.offloading else self.device

    def start_run(self) -> None:
        """A new run starts from the beginning of the sequence."""
        self._position = 0

    @contextmanager
    def on_device(self, name: str, *modules: Movable) -> Iterator[None]:
        """Keep `modules` (the network `name` and what runs with it, e.g. its adapter) on the compute device for
        the block; with sequential offload, send them home after and free the GPU cache."""
        self._advance(name)
        for module in modules:
            module.to(self.device)
        try:
            yield
        finally:
            if self.offloading:
                for module in modules:
                    module.to(self.home)
                self.free_cache()

    def free_cache(self) -> None:
        """Return cached, unused GPU memory to the driver (after offloading, or when networks are dropped)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _advance(self, name: str) -> None:
        for position in range(self._position, len(self.sequence)):
            if self.sequence[position] == name:
                self._position = position
                return
        raise ValueError(
            f"{name!r} used out of the declared order {' -> '.join(self.sequence)} "
            f"(after {self.sequence[self._position]!r})"
            if name in self.sequence
            else f"{name!r} is not in the declared sequence {' -> '.join(self.sequence)}"
        )


__all__ = ["Movable", "Offload", "Residency"]
