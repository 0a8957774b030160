"""The review gallery as one HTML page: a card per asset with its input, imagined back view, preview renders, key
metadata and an interactive 3D view; failed assets with their reason.

The page is self-contained: inline CSS and script, no web fonts, no CDN. Every file is referenced relatively
(`<id>/preview.png`, `index_files/model-viewer.min.js`), so the output folder can be moved, zipped or served as
is. The 3D views are `<model-viewer>` elements (the vendored web component, which reads GLBs with three.js's
GLTFLoader). Browsers refuse to load ES modules and models from `file://` pages, so opened from disk the page shows
the still pictures and a note on how to serve the folder; served over HTTP it loads the component and each card's
model when it scrolls into view.
"""

from __future__ import annotations

import html
from typing import Any, Optional
from urllib.parse import quote

from .entries import GalleryEntry

ASSETS_DIR = "index_files"  # the page's own files, beside index.html (the browsers' "save page" convention)
VIEWER_SCRIPT = "model-viewer.min.js"
PICTURES = (("input.png", "input"), ("back.png", "back view"))
PREVIEW_FILE, TURNTABLE_FILE = "preview.png", "turntable.webp"
MODEL_FILES = ("model.glb", "model.obj", "model.ply")

_STYLE = """
:root { color-scheme: light; --ok: #1d7a3a; --failed: #b3261e; --line: #d9d9d9; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f4; color: #1b1b1b; }
header.top { padding: 16px 24px; background: #fff; border-bottom: 1px solid var(--line); }
header.top h1 { font-size: 20px; margin: 0 0 4px; }
.filters button { margin-right: 6px; }
.note { margin: 8px 0 0; padding: 8px 12px; background: #fff4d6; border: 1px solid #e8c96b; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; padding: 16px 24px;
       align-items: start; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px; min-width: 0; }
.card.failed { border-color: var(--failed); }
.card h2 { font-size: 16px; margin: 0; overflow-wrap: anywhere; }
.card header { display: flex; gap: 8px; align-items: center; margin-bottom: 8px; }
.badge { font-size: 12px; padding: 1px 8px; border-radius: 10px; color: #fff; }
.badge.ok { background: var(--ok); } .badge.failed { background: var(--failed); }
.views { display: grid; grid-template-columns: 1fr 1fr 2fr; gap: 8px; align-items: start; }
figure { margin: 0; } figcaption { font-size: 12px; color: #555; }
.views img { width: 100%; aspect-ratio: 1; object-fit: contain; background: #e9e9e9; display: block; }
model-viewer, .viewer-off { width: 100%; height: auto; aspect-ratio: 1; background: #e9e9e9; display: block; }
.viewer-off { display: flex; align-items: center; justify-content: center; color: #666; font-size: 12px; }
img.preview { width: 100%; margin-top: 8px; display: block; }
img.turntable { width: 33%; margin-top: 8px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0 0; font-size: 13px; }
dt { color: #555; } dd { margin: 0; overflow-wrap: anywhere; }
.error { color: var(--failed); white-space: pre-wrap; overflow-wrap: anywhere; }
.files a { margin-right: 8px; }
body.only-failed .card.ok { display: none; }
"""

_SCRIPT = f"""
if (location.protocol === "http:" || location.protocol === "https:") {{
  const s = document.createElement("script");
  s.type = "module";
  s.src = "{ASSETS_DIR}/{VIEWER_SCRIPT}";
  document.head.appendChild(s);
}} else {{
  document.getElementById("file-note").hidden = false;
}}
for (const button of document.querySelectorAll(".filters button")) {{
  button.addEventListener("click", () => document.body.classList.toggle("only-failed", button.value === "failed"));
}}
"""


def render_page(entries: list[GalleryEntry], title: str, generated: str) -> str:
    """The gallery's HTML for `entries` (`generated`: a timestamp shown in the header)."""
    failed = sum(entry.status == "failed" for entry in entries)
    summary = f"{len(entries)} assets, {len(entries) - failed} ok, {failed} failed · generated {generated}"
    cards = "\n".join(_card(entry) for entry in entries)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{_e(title)} · know3d review</title>
<style>{_STYLE}</style>
</head>
<body>
<header class="top">
<h1>{_e(title)}</h1>
<div class="summary">{_e(summary)}</div>
<div class="filters"><button type="button" value="all">all</button><button type="button" value="failed">failed only</button></div>
<p class="note" id="file-note" hidden>Opened from disk: the 3D views need the folder served over HTTP (browsers do
not load models from file:// pages), e.g. <code>python -m http.server --directory FOLDER 8000</code>, then open
<code>http://localhost:8000/</code>.</p>
</header>
<main>
{cards}
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _card(entry: GalleryEntry) -> str:
    parts = [f'<article class="card {entry.status}" id="asset-{_e(entry.id)}" data-id="{_e(entry.id)}" '
             f'data-status="{entry.status}">',
             f'<header><h2>{_e(entry.id)}</h2><span class="badge {entry.status}">{entry.status}</span></header>']
    if entry.status == "failed":
        parts.append(f'<p class="error">{_e(entry.error or "failed (no reason recorded)")}'
                     f'{f" [{_e(entry.code)}]" if entry.code else ""}</p>')
        if entry.image:
            parts.append(f"<dl><dt>input</dt><dd>{_e(entry.image)}</dd></dl>")
        if entry.has_output:
            parts.append('<p class="kept">The output of an earlier run was kept:</p>')
    if entry.has_output:
        parts.append(_output(entry))
    parts.append("</article>")
    return "\n".join(parts)


def _output(entry: GalleryEntry) -> str:
    files = set(entry.files)
    views = []
    for name, caption in PICTURES:
        if name in files:
            views.append(f'<figure><img src="{_url(entry.id, name)}" alt="{_e(entry.id)} {caption}">'
                         f"<figcaption>{caption}</figcaption></figure>")
        else:
            views.append(f'<figure><div class="viewer-off">no {caption}</div><figcaption>{caption}</figcaption>'
                         "</figure>")
    if "model.glb" in files:
        views.append(f'<figure><model-viewer src="{_url(entry.id, "model.glb")}" alt="{_e(entry.id)} 3D model" '
                     f'camera-controls interaction-prompt="none" shadow-intensity="0" loading="lazy"></model-viewer>'
                     "<figcaption>3D (drag to turn)</figcaption></figure>")
    else:
        views.append('<figure><div class="viewer-off">3D view: GLB exports only</div><figcaption>3D</figcaption>'
                     "</figure>")
    parts = [f'<div class="views">{"".join(views)}</div>']
    if PREVIEW_FILE in files:
        parts.append(f'<img class="preview" src="{_url(entry.id, PREVIEW_FILE)}" '
                     f'alt="{_e(entry.id)} preview: colour and normals, front, right, back, left">')
    if TURNTABLE_FILE in files:
        parts.append(f'<img class="turntable" src="{_url(entry.id, TURNTABLE_FILE)}" alt="{_e(entry.id)} turntable">')
    parts.append(_facts(entry.meta or {}))
    links = [f'<a href="{_url(entry.id, name)}" download>{_e(name)}</a>' for name in entry.files
             if name in MODEL_FILES or name.endswith((".mtl", "metadata.json"))]
    parts.append(f'<p class="files">{"".join(links)}</p>')
    return "\n".join(parts)


def _facts(meta: dict[str, Any]) -> str:
    """Key metadata as a definition list (absent keys are left out: older or partial metadata still shows)."""
    export = _dict(meta.get("export"))
    trellis = _dict(meta.get("trellis2"))
    geometry = _dict(meta.get("geometry"))
    mode = _dict(meta.get("mode"))
    timings = _dict(meta.get("timings_s"))
    bounds = export.get("bounds")
    size = None
    if isinstance(bounds, list) and len(bounds) == 2:
        try:
            size = " × ".join(f"{hi - lo:.3g}" for lo, hi in zip(bounds[0], bounds[1])) + " m"
        except TypeError:
            size = None
    facts = [
        ("back", meta.get("back") or None),
        ("mode", mode.get("used")),
        ("seed", meta.get("seed")),
        ("pipeline", trellis.get("pipeline_type")),
        ("faces", f"{geometry['faces']:,}" if isinstance(geometry.get("faces"), int) else None),
        ("size (x × y × z)", size),
        ("time", f"{sum(v for v in timings.values() if isinstance(v, (int, float))):.1f} s" if timings else None),
        ("input", _dict(meta.get("input")).get("path")),
    ]
    warnings = meta.get("warnings")
    rows = [f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in facts if value not in (None, "")]
    if isinstance(warnings, list) and warnings:
        rows.append(f"<dt>warnings</dt><dd>{'<br>'.join(_e(w) for w in warnings)}</dd>")
    return f'<dl class="meta">{"".join(rows)}</dl>'


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _url(asset_id: str, name: str) -> str:
    return f"{quote(asset_id)}/{quote(name)}"


def _e(value: Optional[object]) -> str:
    return html.escape("" if value is None else str(value), quote=True)


__all__ = ["ASSETS_DIR", "VIEWER_SCRIPT", "render_page"]
