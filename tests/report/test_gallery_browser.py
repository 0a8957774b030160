"""The review gallery in a real headless Chromium (Playwright): served over HTTP it loads with no console error,
shows every asset's card with its pictures decoded, and three.js's GLTFLoader (inside `<model-viewer>`) loads each
GLB; opened from disk it still shows the pictures and says how to get the 3D views.

Needs the `playwright` package (test extra) and a Chromium: `KNOW3D_CHROMIUM`, `/usr/bin/chromium` or Playwright's
own download; skipped otherwise. SwiftShader stands in for a GPU.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from know3d_cli.report import write_report

from .conftest import FAILURE

CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]
VIEWPORT = {"width": 1280, "height": 1800}  # every card in view: model-viewer loads its model when it is visible
LOAD_TIMEOUT_MS = 60_000

# records every <model-viewer> load / error event (they do not bubble; a capturing listener sees them)
RECORD_VIEWER_EVENTS = """
window.viewerEvents = [];
for (const type of ["load", "error"]) {
  document.addEventListener(type, event => {
    if (event.target.tagName === "MODEL-VIEWER") {
      window.viewerEvents.push({type, src: event.target.getAttribute("src"), detail: String(event.detail?.type ?? "")});
    }
  }, true);
}
"""


def _chromium() -> str | None:
    for candidate in (os.environ.get("KNOW3D_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            pytest.skip(f"no Chromium to run (install chromium or set KNOW3D_CHROMIUM): {str(exc).splitlines()[0]}")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def gallery(gallery_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("served") / "out"
    shutil.copytree(gallery_folder, out)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def served(gallery) -> Iterator[str]:
    """The gallery folder on http://127.0.0.1:<free port>/ for the duration of the module."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(gallery)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _open(browser, url: str):
    page = browser.new_page(viewport=VIEWPORT)
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.add_init_script(RECORD_VIEWER_EVENTS)
    page.goto(url + "index.html", wait_until="load")
    return page, problems, requests


def _cards(page) -> dict[str, dict]:
    return {card["id"]: card for card in page.evaluate("""() => [...document.querySelectorAll("article.card")].map(c => {
        const box = c.getBoundingClientRect();
        return {id: c.dataset.id, status: c.dataset.status, text: c.innerText,
                box: [box.left + scrollX, box.top + scrollY, box.width, box.height],
                images: [...c.querySelectorAll("img")].map(i => ({src: i.getAttribute("src"), complete: i.complete,
                                                                 width: i.naturalWidth}))};
    })""")}


def _crop(screenshot: bytes, box: list[float]) -> np.ndarray:
    image = np.asarray(Image.open(io.BytesIO(screenshot)).convert("RGB")).astype(int)
    left, top, width, height = (int(round(v)) for v in box)
    return image[top:top + height, left:left + width]


def test_served_gallery_shows_every_card_and_loads_every_glb(browser, served):
    page, problems, requests = _open(browser, served)
    page.wait_for_function("window.viewerEvents.length >= 1", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=LOAD_TIMEOUT_MS)
    events = page.evaluate("window.viewerEvents")
    assert events == [{"type": "load", "src": "red/model.glb", "detail": ""}]  # three's GLTFLoader parsed the GLB
    assert page.evaluate("document.querySelector('model-viewer').loaded") is True
    assert all(url.startswith((served, "blob:" + served.rstrip("/"))) for url in requests), requests  # offline

    cards = _cards(page)
    assert {k: v["status"] for k, v in cards.items()} == {"red": "ok", "missing": "failed", "blue": "ok"}
    assert FAILURE in cards["missing"]["text"]
    for key in ("red", "blue"):
        images = {image["src"].split("/")[-1]: image for image in cards[key]["images"]}
        assert {"input.png", "back.png", "preview.png"} <= set(images)
        assert all(image["complete"] and image["width"] > 0 for image in images.values()), images  # decoded
    assert "turntable.webp" in {image["src"].split("/")[-1] for image in cards["red"]["images"]}

    screenshot = page.screenshot(full_page=True)
    for key, card in cards.items():
        assert card["box"][2] > 200 and card["box"][3] > 50, card["box"]
        pixels = _crop(screenshot, card["box"])
        assert pixels.std() > 10  # the card is drawn, not a blank box
    red, blue = _crop(screenshot, cards["red"]["box"]), _crop(screenshot, cards["blue"]["box"])
    reddish = (red[..., 0] > 150) & (red[..., 1] < 90) & (red[..., 2] < 90)
    bluish = (blue[..., 2] > 150) & (blue[..., 0] < 90)
    assert reddish.sum() > 2000 and bluish.sum() > 2000  # their pictures (and the red 3D view) are on screen
    assert problems == [], problems
    page.close()


def test_gallery_opened_from_disk_shows_pictures_and_explains_3d(browser, gallery):
    page, problems, _ = _open(browser, gallery.as_uri() + "/")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=LOAD_TIMEOUT_MS)
    assert page.evaluate("document.getElementById('file-note').hidden") is False
    assert page.evaluate("customElements.get('model-viewer') === undefined")  # no module load from file://
    cards = _cards(page)
    assert len(cards) == 3
    assert all(image["width"] > 0 for card in cards.values() for image in card["images"])
    page.click("button[value=failed]")
    visible = page.evaluate("[...document.querySelectorAll('article.card')].filter(c => c.offsetParent)"
                            ".map(c => c.dataset.id)")
    assert visible == ["missing"]
    assert problems == [], problems
    page.close()
