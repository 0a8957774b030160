"""Gradient clipping at a fixed norm, or adaptively at a percentile of the recent gradient norms (TRELLIS.2's recipe:
max_norm 1, 95th percentile of the last 1000 steps, capped by max_norm)."""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)


class AdaptiveGradClip:
    """The clipping threshold for the next step, from the norms seen so far.

    Args:
        max_norm: the threshold, and the cap of the adaptive one; None = no clipping.
        percentile: adapt to this percentile of the last `window` finite norms once `window` were seen; None = fixed.
        window: number of recent norms kept.
    """

    def __init__(self, max_norm: float | None, percentile: float | None, window: int):
        self.max_norm = max_norm
        self.percentile = percentile
        self.window = window
        self.norms: list[float] = []  # ring buffer, oldest first
        self.threshold = max_norm if max_norm is not None else math.inf

    def record(self, norm: float) -> None:
        """Remember a step's (pre-clipping) global norm and update the threshold."""
        if self.percentile is None or not math.isfinite(norm):
            return
        self.norms.append(float(norm))
        if len(self.norms) > self.window:
            self.norms.pop(0)
        if len(self.norms) == self.window:
            adaptive = float(np.percentile(np.asarray(self.norms), self.percentile))
            self.threshold = min(adaptive, self.max_norm) if self.max_norm is not None else adaptive

    def state_dict(self) -> dict:
        return {"norms": list(self.norms), "threshold": self.threshold}

    def load_state_dict(self, state: dict) -> None:
        self.norms = [float(n) for n in state["norms"]]
        self.threshold = float(state["threshold"])


__all__ = ["AdaptiveGradClip"]
