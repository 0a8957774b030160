"""`timing`: per-step seconds, and the stage hook the TRELLIS.2 pipeline is timed and reported with."""

from __future__ import annotations

from know3d_cli.timing import timed, timed_stages


def test_timed_adds_up_and_tolerates_no_dict():
    timings: dict[str, float] = {}
    for _ in range(2):
        with timed(timings, "step"):
            pass
    assert list(timings) == ["step"] and timings["step"] >= 0.0
    with timed(None, "ignored"):
        pass


def test_timed_stages_times_each_stage_and_reports_its_start():
    timings: dict[str, float] = {}
    started: list[str] = []
    hook = timed_stages(timings, started.append)
    with hook("condition"):
        assert started == ["condition"] and timings == {}  # reported as it starts, timed when it ends
    for stage in ("ss", "ss"):
        with hook(stage):
            pass
    assert started == ["condition", "ss", "ss"] and set(timings) == {"condition", "ss"}
    with timed_stages(timings)("decode"):  # no progress callback
        pass
    assert "decode" in timings
