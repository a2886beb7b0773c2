"""Drive headless Chromium through the DevTools protocol: `chromium_page` starts it and
gives the page to drive (the one launcher of the tests' browser helpers: console_page.py
uses it too); `screenshot` opens a page with some localStorage set first (a UI's
remembered choices, e.g. which task groups are open), waits until it shows a text and
takes a screenshot. No tests here."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from websockets.sync.client import connect


class Page:
    def __init__(self, websocket) -> None:
        self.ws = websocket
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.event(message)

    def event(self, message: dict) -> None:
        """An event read while waiting for an answer: dropped here, recorded by a subclass."""

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return True
            time.sleep(0.5)
        return False


@contextlib.contextmanager
def chromium_page(
    browser: str, work: Path, size: tuple[int, int] = (1600, 1300), page: Callable[..., Page] = Page
) -> Iterator[Page]:
    """Start headless Chromium (the executable `browser`, a fresh profile under `work`) on a
    blank tab and yield `page(websocket)` connected to it; Chromium is stopped after."""
    profile = work / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active.exists() and active.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        port = int(active.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        target = next(t for t in targets if t.get("type") == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            yield page(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def screenshot(
    browser: str,
    url: str,
    out: Path,
    work: Path,
    storage: dict[str, str] | None = None,
    shows: str | None = None,
    seconds: float = 90.0,
    size: tuple[int, int] = (1600, 1300),
) -> str:
    """Open `url` (after setting `storage` in its origin's localStorage), wait until the
    page's text contains `shows`, save a PNG screenshot to `out`; returns the page's text."""
    with chromium_page(browser, work, size) as page:
        page.call("Page.enable")
        origin = "/".join(url.split("/")[:3])
        if storage:
            page.call("Page.navigate", url=origin + "/")
            page.wait_for("document.readyState === 'complete'", 60)
            for key, value in storage.items():
                page.evaluate(f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)})")
        page.call("Page.navigate", url=url)
        page.wait_for("document.readyState === 'complete'", 60)
        if shows:
            page.wait_for(f"document.body && document.body.innerText.includes({json.dumps(shows)})", seconds)
        time.sleep(2)  # let the last requests paint
        text = page.evaluate("document.body ? document.body.innerText : ''") or ""
        shot = page.call("Page.captureScreenshot", format="png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return text
