"""The progress display never takes stdout, and log lines print above its bars, when stderr is a terminal."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import sys
import termios
import threading

import numpy as np
import pytest
from PIL import Image

from know3d_cli.cli import main

from .conftest import SMALLEST, tiny

ERASE_LINE = "\x1b[2K"  # what Rich writes before printing above its live display
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and a pseudo-terminal")
def test_batch_stdout_is_complete_while_stderr_is_a_terminal(tiny_root, tmp_path, fork, one_thread):
    arr = np.full((48, 48, 3), 255, np.uint8)
    arr[10:38, 12:36] = (40, 80, 200)
    for name in ("a", "b"):
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image\na.png\nb.png\n", encoding="utf-8")
    args = ["batch", str(manifest), "--out", str(tmp_path / "out"), *tiny(tiny_root, *SMALLEST)]

    master, terminal = pty.openpty()  # stderr: a terminal, so the live display runs
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a 80-column terminal
    read_out, write_out = os.pipe()  # stdout: a pipe, as in `know3d batch m.csv | jq`
    captured = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the child closed the terminal
                return
            if not chunk:
                return
            captured.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    def child() -> int:
        os.dup2(write_out, 1)
        import sys

        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        return main(args)

    pid = fork(child, stderr=terminal)
    os.close(write_out)
    os.close(terminal)
    with os.fdopen(read_out, encoding="utf-8") as pipe:
        stdout = pipe.read()
    _, status = os.waitpid(pid, 0)
    reader.join(timeout=30)
    os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0, captured.decode(errors="replace")[-2000:]

    events = [json.loads(line) for line in stdout.splitlines()]  # every line is JSON, none went to the terminal
    assert [e.get("id") for e in events] == ["a", "b", None] and events[-1]["event"] == "summary"
    screen = captured.decode("utf-8", errors="replace")
    assert '"event"' not in screen
    logs = [m.start() for m in re.finditer(r"[ab]: trellis2 done in", screen)]
    assert len(logs) == 2, screen
    for start in logs:  # each log line starts on a cleared line above the bars, not inside a bar's line
        assert screen[:start].endswith((ERASE_LINE, "\n")), repr(screen[max(0, start - 80):start + 30])
    visible = [line for line in re.split(r"[\r\n]", ANSI.sub("", screen)) if line.strip()]
    assert visible and max(map(len, visible)) <= 80, max(visible, key=len)  # no bar wraps in 80 columns


def test_stage_bars_show_steps_and_time_left_and_go_when_done(monkeypatch):
    from rich.console import Console

    from know3d_cli.progress import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with Progress() as progress:
        progress.items(12)
        with progress.stage("trellis2", "a-long-asset-name-from-a-studio-shoot"):
            progress.note("shape_lr")
            progress.steps(3, 12)
            screen = Console(file=io.StringIO(), width=80, color_system=None)
            screen.print(progress._rich.get_renderable())
            lines = screen.file.getvalue().splitlines()
            assert len(lines) == 2 and max(map(len, lines)) <= 80, lines  # the asset counter and one stage bar
            (bar,) = [line for line in lines if "3/12" in line]
            assert "a-long-asset-name" in bar and "…" in bar  # the name is cut, the counts are not
            assert re.search(r"(-:--|\d+:\d\d)\s+\d+:\d\d:\d\d\s*$", bar), bar  # time left, then elapsed
            progress.note("shape_hr")  # the next sub-stage counts its own steps
            assert progress._rich.tasks[-1].completed == 0 and progress._rich.tasks[-1].total is None
        assert [task.description for task in progress._rich.tasks] == ["assets"]  # the finished bar is gone
