"""Euler flow sampler of TRELLIS.2 (`FlowEulerGuidanceIntervalSampler`): shifted time grid, classifier-free
guidance restricted to a t interval, CFG rescale, and multiview averaging.

Model-agnostic: the model enters as a velocity callable `velocity(x, t_model, cond) -> v`, where `x` and `v` are dense
tensors or `SparseTensor`s, `t_model` is the (B,) model time `1000 t`, and `cond` is whatever object the caller put in
the condition list (image tokens, a prepared `CrossContext`, the stages' `FlowCondition`, ...). All sampler
arithmetic is fp32.

Flow convention (spec section 4): `x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps`, the model predicts
`v = (1 - sigma_min) eps - x0`, sampling runs t from 1 to 0 with `x <- x - (t - t_prev) v`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Union

import numpy as np
import torch

from .sparse.tensor import SparseTensor

logger = logging.getLogger(__name__)

Latent = Union[torch.Tensor, SparseTensor]
Velocity = Callable[[Latent, torch.Tensor, Any], Latent]
StepCallback = Callable[[int, int], None]  # (steps done, steps in all), after each step

SIGMA_MIN = 1e-5
MODEL_TIME_SCALE = 1000.0


@dataclass(frozen=True)
class SamplerSettings:
    """One stage's sampler parameters (`pipeline.json`: `<stage>_sampler.params` and `.args.sigma_min`, parsed by
    `pipeline_spec`).

    Attributes:
        steps: Euler steps.
        guidance_strength: CFG scale g; 1 disables CFG (one conditional pass per step and view); 0 makes a guided
            step the unconditional prediction alone (one pass, no rescale), as the reference does.
        guidance_rescale: CFG rescale factor r in [0, 1]; 0 disables it.
        guidance_interval: (lo, hi): CFG only at steps whose (shifted) t is in [lo, hi].
        rescale_t: time-shift factor s of the grid.
        sigma_min: noise floor of the flow.
    """

    steps: int
    guidance_strength: float
    guidance_rescale: float = 0.0
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    rescale_t: float = 1.0
    sigma_min: float = SIGMA_MIN

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"sampler steps must be >= 1, got {self.steps}")
        if not self.rescale_t > 0:
            raise ValueError(f"sampler rescale_t must be > 0, got {self.rescale_t}")

    def guidance_at(self, t: float) -> bool:
        """Whether the step at time t runs the unconditional pass."""
        return self.guidance_strength != 1.0 and in_guidance_interval(t, self.guidance_interval)

    def conditional_at(self, t: float) -> bool:
        """Whether the step at time t runs the conditional pass(es): always, except guided steps at g = 0."""
        return not (self.guidance_strength == 0.0 and self.guidance_at(t))

    def num_forwards(self, num_views: int = 1) -> int:
        """Model forwards of a full run: `num_views` per conditional step, plus one unconditional pass per guided
        step."""
        ts = timesteps(self.steps, self.rescale_t)
        return sum(num_views * self.conditional_at(t) + int(self.guidance_at(t)) for t in ts[:-1])


class SampleResult(NamedTuple):
    x: Latent  # the final sample (fp32)
    forwards: int  # velocity calls made


def timesteps(num_steps: int, rescale_t: float) -> list[float]:
    """`num_steps + 1` times from 1 to 0: `linspace(1, 0)` shifted by `t <- s t / (1 + (s - 1) t)`."""
    if num_steps < 1:
        raise ValueError(f"sampler steps must be >= 1, got {num_steps}")
    if not rescale_t > 0:
        raise ValueError(f"sampler rescale_t must be > 0, got {rescale_t}")
    # float64 numpy, like the reference, so the interval test at t == 0.6 (s = 3) falls the same way
    t = np.linspace(1.0, 0.0, num_steps + 1)
    t = rescale_t * t / (1.0 + (rescale_t - 1.0) * t)
    return [float(v) for v in t]


def in_guidance_interval(t: float, interval: Sequence[float]) -> bool:
    lo, hi = interval
    return lo <= t <= hi


def _feats(x: Latent) -> torch.Tensor:
    return x.feats if isinstance(x, SparseTensor) else x


def _like(x: Latent, feats: torch.Tensor) -> Latent:
    return x.replace(feats) if isinstance(x, SparseTensor) else feats


def _batch_size(x: Latent) -> int:
    return x.batch_size if isinstance(x, SparseTensor) else x.shape[0]


def model_time(t: float, x: Latent) -> torch.Tensor:
    """(B,) fp32 model time `1000 t` on x's device."""
    return torch.full((_batch_size(x),), MODEL_TIME_SCALE * t, dtype=torch.float32, device=_feats(x).device)


def step(x: Latent, v: Latent, t: float, t_prev: float) -> Latent:
    """One Euler step from t to t_prev (< t), in fp32: `x - (t - t_prev) v`."""
    return _like(x, _feats(x).float() - (t - t_prev) * _feats(v).float())


def cfg_velocity(v_pos: Latent, v_neg: Latent, guidance_strength: float) -> Latent:
    """`g v_pos + (1 - g) v_neg`, fp32."""
    g = guidance_strength
    return _like(v_pos, g * _feats(v_pos).float() + (1.0 - g) * _feats(v_neg).float())


def _per_sample_std(x: Latent) -> torch.Tensor:
    """Std of each sample over all its elements, broadcastable against x's (feats) tensor."""
    if isinstance(x, SparseTensor):
        stds = torch.stack([x.feats[rows].std() for rows in x.row_slices])  # (B,)
        return x.broadcast(stds[:, None])  # (N, 1)
    return x.flatten(1).std(dim=1).reshape(-1, *([1] * (x.ndim - 1)))


def rescale_guidance(
    x_t: Latent, v_pos: Latent, v_cfg: Latent, t: float, guidance_rescale: float, sigma_min: float = SIGMA_MIN
) -> Latent:
    """CFG rescale: match the x0 prediction's per-sample std to the conditional one, blended by r.

    `x0(v) = (1 - s) x_t - (s + (1 - s) t) v`; `x0_r = x0_cfg std(x0_pos) / std(x0_cfg)`;
    `x0 = r x0_r + (1 - r) x0_cfg`; returns `v = ((1 - s) x_t - x0) / (s + (1 - s) t)` (s = sigma_min).
    """
    s, r = sigma_min, guidance_rescale
    sigma_t = s + (1.0 - s) * t
    xt = _feats(x_t).float()
    x0_pos = (1.0 - s) * xt - sigma_t * _feats(v_pos).float()
    x0_cfg = (1.0 - s) * xt - sigma_t * _feats(v_cfg).float()
    std_pos = _per_sample_std(_like(x_t, x0_pos))
    std_cfg = _per_sample_std(_like(x_t, x0_cfg))
    x0 = r * (x0_cfg * (std_pos / std_cfg)) + (1.0 - r) * x0_cfg
    return _like(x_t, ((1.0 - s) * xt - x0) / sigma_t)


def guided_velocity(x_t: Latent, t: float, v_pos: Latent, v_neg: Latent, settings: SamplerSettings) -> Latent:
    """CFG (and CFG rescale when `guidance_rescale > 0`) of the conditional and unconditional predictions."""
    v = cfg_velocity(v_pos, v_neg, settings.guidance_strength)
    if settings.guidance_rescale > 0:
        v = rescale_guidance(x_t, v_pos, v, t, settings.guidance_rescale, settings.sigma_min)
    return v


def _mean(vs: Sequence[Latent]) -> Latent:
    if len(vs) == 1:
        return _like(vs[0], _feats(vs[0]).float())
    total = _feats(vs[0]).float()
    for v in vs[1:]:
        total = total + _feats(v).float()
    return _like(vs[0], total / len(vs))


@torch.no_grad()
def sample(
    velocity: Velocity,
    noise: Latent,
    conds: Sequence[Any] | Any,
    neg_cond: Any,
    settings: SamplerSettings,
    on_step: StepCallback | None = None,
) -> SampleResult:
    """Integrate the flow from `noise` (t = 1) to a sample (t = 0).

    Args:
        velocity: `velocity(x, t_model (B,), cond) -> v`, same kind (dense / sparse) and shape as x.
        noise: (B, ...) dense tensor or `SparseTensor` at t = 1.
        conds: one condition, or a list/tuple with one condition per view (multiview: the conditional
            prediction is the mean over views at every step).
        neg_cond: the unconditional condition (shared by all views); unused, and may be None, when no step is
            guided.
        settings: sampler parameters.
        on_step: called as `on_step(step_index, num_steps)` after each step.

    Returns:
        `SampleResult(x, forwards)`: the final x in fp32 and the number of velocity calls.
    """
    views = list(conds) if isinstance(conds, (list, tuple)) else [conds]
    if not views:
        raise ValueError("sample() needs at least one condition")
    ts = timesteps(settings.steps, settings.rescale_t)
    if neg_cond is None and any(settings.guidance_at(t) for t in ts[:-1]):
        raise ValueError("guidance is active (guidance_strength != 1) but neg_cond is None")

    x = _like(noise, _feats(noise).float())
    forwards = 0
    for index, (t, t_prev) in enumerate(zip(ts[:-1], ts[1:])):
        t_model = model_time(t, x)
        if not settings.conditional_at(t):  # g = 0: the unconditional prediction is the velocity
            v = _mean([velocity(x, t_model, neg_cond)])
            forwards += 1
        else:
            v_pos = _mean([velocity(x, t_model, cond) for cond in views])
            forwards += len(views)
            if settings.guidance_at(t):
                v_neg = velocity(x, t_model, neg_cond)
                forwards += 1
                v = guided_velocity(x, t, v_pos, v_neg, settings)
            else:
                v = v_pos
        x = step(x, v, t, t_prev)
        if on_step is not None:
            on_step(index + 1, settings.steps)
    return SampleResult(x, forwards)


__all__ = [
    "SIGMA_MIN",
    "SampleResult",
    "SamplerSettings",
    "Velocity",
    "cfg_velocity",
    "guided_velocity",
    "in_guidance_interval",
    "model_time",
    "rescale_guidance",
    "sample",
    "step",
    "timesteps",
]
