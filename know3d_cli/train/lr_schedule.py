"""Learning rate per step: linear warm-up, then constant, cosine or linear decay to a floor at the last step."""

from __future__ import annotations

import math

from ..train_config import LrDecay


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay: LrDecay, min_ratio: float) -> float:
    """Multiplier of the peak learning rate for optimiser step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == LrDecay.constant:
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
    if decay == LrDecay.cosine:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


__all__ = ["lr_factor"]
