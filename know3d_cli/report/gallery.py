"""`know3d report OUT`: write the review gallery `OUT/index.html` and the files it needs (`OUT/index_files/`).

The vendored `<model-viewer>` script and its licences are copied first, the page last, each atomically, so a
reader never sees a half-written page or a page whose script is missing. Running it again rewrites the page from
what the folder holds now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from ..errors import InputError, OutputError
from ..io import atomic_write, ensure_writable_dir
from ..outputs import RESULTS_FILE
from .entries import collect_entries
from .page import ASSETS_DIR, VIEWER_SCRIPT, render_page

logger = logging.getLogger(__name__)

REPORT_FILE = "index.html"
VENDOR_FILES = (VIEWER_SCRIPT, "LICENSES.txt")  # copied from know3d_cli/report/vendor/


@dataclass(frozen=True)
class Report:
    path: Path  # OUT/index.html
    assets: int  # cards on the page
    failed: int  # of which failed

    def event(self) -> dict:
        """The command's line on stdout."""
        return {"event": "report", "path": str(self.path), "assets": self.assets, "failed": self.failed}


def write_report(out: Path) -> Report:
    """Write `out/index.html` for the assets in `out`.

    Raises:
        InputError: `out` is not a folder, or holds no finished asset and no results file (exit 3).
        OutputError: `out` is not writable (exit 2).
    """
    out = Path(out)
    if not out.is_dir():
        raise InputError(f"output folder {out} not found; give the --out folder of a generate or batch run")
    entries = collect_entries(out)
    if not entries:
        raise InputError(f"{out} holds no know3d assets (no <id>/metadata.json and no {RESULTS_FILE}); give the "
                         "--out folder of a generate or batch run")
    ensure_writable_dir(out)
    page = render_page(entries, title=out.resolve().name or str(out),
                       generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    try:
        vendor = resources.files("know3d_cli.report").joinpath("vendor")
        for name in VENDOR_FILES:
            data = vendor.joinpath(name).read_bytes()
            target = out / ASSETS_DIR / name
            if not (target.is_file() and target.read_bytes() == data):
                atomic_write(target, data)
        atomic_write(out / REPORT_FILE, page.encode("utf-8"))
    except OSError as exc:
        raise OutputError(f"cannot write the review gallery into {out} ({exc.strerror or exc})") from exc
    failed = sum(entry.status == "failed" for entry in entries)
    logger.info("review gallery: %s (%d assets, %d failed)", out / REPORT_FILE, len(entries), failed)
    return Report(out / REPORT_FILE, len(entries), failed)


__all__ = ["REPORT_FILE", "Report", "write_report"]
