"""The review gallery of an output folder (`know3d report`): one self-contained HTML page with every asset's input,
back view, previews, key metadata and an interactive 3D view, and the failures with their reason."""

from .entries import GalleryEntry, collect_entries
from .gallery import REPORT_FILE, Report, write_report
from .page import render_page

__all__ = ["GalleryEntry", "REPORT_FILE", "Report", "collect_entries", "render_page", "write_report"]
