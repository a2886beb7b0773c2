"""Does a web page load anything from the network? Two ways to ask, for the
dbt docs page the reports publish (test_catalog.py, test_report_docs.py).

- `external_loads`: read the HTML, every element that makes the browser
  fetch something (script, link, img, iframe, ...) and every CSS url() or
  @import, and list the addresses that leave the page's own origin. It
  cannot see what scripts build at run time.
- `page_requests`: open the page in headless Chromium, served over HTTP from
  127.0.0.1 (from file:// a protocol-relative address would not even reach
  the network), let its scripts run, and list every request the page itself
  made, from Chromium's net log (requests whose initiator is the page's
  origin; Chromium's own background requests have none). No tests here."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

# elements and attributes through which HTML makes the browser fetch
LOADING = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "track": ("src",),
    "input": ("src",),
}
REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)  # http://, https://, //host
CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:[a-z][a-z0-9+.-]*:)?//[^'")\s]+)""", re.I)


class _Loads(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in LOADING.get(tag, ()) and value:
                # srcset: several addresses
                for part in value.split(",") if name == "srcset" else [value]:
                    if REMOTE.match(part):
                        self.found.append(f"<{tag} {name}={part.strip()}>")
            if name == "style" and value:
                self.found += CSS_URL.findall(value)

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.found += CSS_URL.findall(data)


def external_loads(html: str) -> list[str]:
    parser = _Loads()
    parser.feed(html)
    parser.close()
    return parser.found


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def serving(folder: Path):
    """folder over HTTP on 127.0.0.1, at a free port; yields the base address."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def page_requests(browser: str, folder: Path, page: str, work: Path) -> tuple[str, list[str], str]:
    """Open folder/page in headless Chromium over HTTP; returns the page's origin,
    the addresses of every request the page made (to its origin included) and
    the DOM its scripts left."""
    work.mkdir(parents=True, exist_ok=True)
    netlog = work / "netlog.json"
    with serving(folder) as base:
        proc = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={work / 'profile'}",
                f"--log-net-log={netlog}",
                "--virtual-time-budget=5000",  # lets the page's scripts run to completion
                "--dump-dom",
                f"{base}/{page}",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    if "<html" not in proc.stdout:
        raise RuntimeError(f"chromium rendered nothing: {proc.stderr[-2000:]}")
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = [
        e["params"]["url"]
        for e in log["events"]
        if e.get("type") == start_job and (e.get("params") or {}).get("initiator") == base
    ]
    return base, requested, proc.stdout
