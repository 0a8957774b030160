"""Learning-rate schedule, adaptive gradient clipping and the EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from know3d_cli.train.ema import ExponentialMovingAverage
from know3d_cli.train.grad_clip import AdaptiveGradClip
from know3d_cli.train.lr_schedule import lr_factor
from know3d_cli.train_config import LrDecay


def test_warmup_then_decay():
    assert [lr_factor(s, 10, 4, LrDecay.constant, 0.0) for s in (0, 3, 4, 9)] == [0.25, 1.0, 1.0, 1.0]
    assert lr_factor(4, 10, 4, LrDecay.cosine, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 4, LrDecay.cosine, 0.1) == pytest.approx(0.1)
    assert lr_factor(7, 10, 4, LrDecay.linear, 0.0) == pytest.approx(0.5)
    assert lr_factor(0, 10, 0, LrDecay.linear, 0.0) == pytest.approx(1.0)


def test_adaptive_clip_threshold_follows_the_recent_percentile_under_the_cap():
    clip = AdaptiveGradClip(max_norm=1.0, percentile=50.0, window=4)
    for norm in (0.1, 0.2, 0.3):
        clip.record(norm)
        assert clip.threshold == 1.0  # the window is not full yet
    clip.record(0.4)
    assert clip.threshold == pytest.approx(0.25)
    clip.record(float("nan"))  # ignored
    for norm in (5.0, 6.0, 7.0):
        clip.record(norm)
    assert clip.threshold == 1.0  # capped by max_norm
    restored = AdaptiveGradClip(1.0, 50.0, 4)
    restored.load_state_dict(clip.state_dict())
    assert restored.norms == clip.norms and restored.threshold == clip.threshold
    assert AdaptiveGradClip(None, None, 4).threshold == math.inf


def test_ema_decay_warmup_and_applied_weights():
    layer = nn.Linear(2, 2)
    ema = ExponentialMovingAverage(dict(layer.named_parameters()), rate=0.9, warmup=True)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    assert ema.decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    ema.update(dict(layer.named_parameters()))
    torch.testing.assert_close(ema.shadow["weight"], 0.1 * start + 0.9 * (start + 1.0))
    trained = layer.weight.detach().clone()
    with ema.applied(layer):
        torch.testing.assert_close(layer.weight, ema.shadow["weight"])
    torch.testing.assert_close(layer.weight, trained)
    assert ExponentialMovingAverage(dict(layer.named_parameters()), rate=0.0, warmup=True).state_dict() == {}
