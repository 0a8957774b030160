"""Exponential moving average of the trained parameters (fp32 shadow copies, kept by name)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

logger = logging.getLogger(__name__)


class ExponentialMovingAverage:
    """`shadow <- d shadow + (1 - d) param` after every optimiser step.

    Args:
        params: the trained parameters by name (their current values start the average).
        rate: decay d; 0 keeps no average.
        warmup: decay `min(rate, (1 + n) / (10 + n))` at update n, so the average is not stuck at the initial
            weights in short runs.
    """

    def __init__(self, params: dict[str, torch.Tensor], rate: float, warmup: bool):
        self.rate = rate
        self.warmup = warmup
        self.updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in params.items()} if rate > 0 else {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def decay(self) -> float:
        if not self.warmup:
            return self.rate
        return min(self.rate, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, params: dict[str, torch.Tensor]) -> None:
        if not self.enabled:
            return
        d = self.decay()
        for name, param in params.items():
            self.shadow[name].mul_(d).add_(param.detach().float(), alpha=1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        if set(tensors) != set(self.shadow):
            raise KeyError(f"EMA names differ: {sorted(set(tensors) ^ set(self.shadow))[:5]}")
        for name, tensor in tensors.items():
            self.shadow[name].copy_(tensor)
        self.updates = updates

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """Inside the block, `module`'s named parameters hold the average (restored after)."""
        if not self.enabled:
            yield
            return
        params = dict(module.named_parameters())
        saved = {name: params[name].detach().clone() for name in self.shadow}
        with torch.no_grad():
            for name, value in self.shadow.items():
                params[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)


__all__ = ["ExponentialMovingAverage"]
