"""Open a page in headless Chromium as a logged-in user and record what a person would
not see: every console error, uncaught exception and failed or refused load, and every
address the page requested. For the Superset dashboard (test_superset.py). No tests here."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.browser import Page, chromium_page


@dataclass
class PageRecord:
    text: str = ""
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    requests: list[str] = field(default_factory=list)  # every URL the page requested
    posts: list[tuple[str, str]] = field(default_factory=list)  # (URL, body) of every request with a body
    shown: bool = False  # the page showed what was waited for


def open_page(
    browser: str,
    url: str,
    out: Path,
    work: Path,
    cookies: list[dict] | None = None,
    ready: str = "true",
    seconds: float = 120.0,
    settle: float = 3.0,
    size: tuple[int, int] = (1600, 1300),
) -> PageRecord:
    """Set `cookies`, open `url`, wait until the JavaScript expression `ready` is true,
    let the page settle, save a PNG screenshot to `out`; returns what was recorded."""
    record = PageRecord()
    with chromium_page(browser, work, size, page=lambda ws: _RecordingPage(ws, record)) as page:
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1, mobile=False
        )
        for cookie in cookies or []:
            page.call("Network.setCookie", **cookie)
        page.call("Page.navigate", url=url)
        record.shown = page.wait_for(ready, seconds)
        time.sleep(settle)
        page.drain()
        record.text = page.evaluate("document.body ? document.body.innerText : ''") or ""
        shot = page.call("Page.captureScreenshot", format="png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        page.drain()
        return record


class _RecordingPage(Page):
    """A Page that keeps the events it reads past while waiting for its answers."""

    def __init__(self, websocket, record: PageRecord) -> None:
        super().__init__(websocket)
        self.record = record

    def drain(self) -> None:
        """Read the events already sent (a round trip makes sure they have arrived)."""
        self.call("Runtime.evaluate", expression="1")

    def event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.record.errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.record.errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.record.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            request = params.get("request", {})
            self.record.requests.append(request.get("url", ""))
            if request.get("postData"):
                self.record.posts.append((request.get("url", ""), request["postData"]))
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.record.errors.append(f"load failed: {params.get('errorText')} {params.get('blockedReason', '')}")
