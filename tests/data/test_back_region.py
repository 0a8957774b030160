"""Back-region IoU and part identification on 64^3 occupancies (TRELLIS.2 frame: the back is +y)."""

from __future__ import annotations

import numpy as np
import pytest

from know3d_cli.data.back_region import back_grid, back_iou, identify_part


def _box(lo, hi) -> np.ndarray:
    axes = [np.arange(a, b) for a, b in zip(lo, hi)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def test_only_the_back_half_counts():
    front = _box((10, 0, 10), (20, 32, 20))
    back = _box((10, 32, 10), (20, 40, 20))
    assert back_grid(front).sum() == 0 and back_grid(back).sum() == len(back)
    assert back_iou(front, _box((30, 0, 30), (40, 32, 40))) == 1.0  # nothing behind in either: equal backs
    assert back_iou(np.concatenate([front, back]), back) == 1.0
    assert back_iou(back, _box((10, 32, 10), (20, 36, 20))) == pytest.approx(0.5)


def test_identify_part_picks_the_best_matching_back():
    body = _box((16, 16, 16), (48, 40, 48))
    parts = {"none": body, "knob": np.concatenate([body, _box((28, 40, 28), (36, 48, 36))]),
             "fin": np.concatenate([body, _box((31, 40, 16), (33, 60, 48))])}
    generated = np.concatenate([body, _box((30, 40, 18), (34, 58, 46))])  # a slightly off fin
    assert identify_part(generated, parts) == "fin"
    assert identify_part(body, parts) == "none"
    with pytest.raises(ValueError):
        identify_part(body, {})
