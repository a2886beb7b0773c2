"""Headless Chromium on a static page: run it with a window size, and measure how wide the
page lays out (documentElement.scrollWidth), so a test can say that nothing scrolls
sideways at a given width. No tests here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

WIDTH = 1280  # a laptop's browser window: the reports must fit it


def headless(browser: str, work: Path, *args: str, width: int = WIDTH, height: int = 1600):
    """Run headless Chromium with its own profile under `work`; returns the finished process."""
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            f"--user-data-dir={work / 'chromium'}",
            f"--window-size={width},{height}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def scroll_width(browser: str, page: Path, work: Path, open_details: bool = False, width: int = WIDTH) -> int:
    """documentElement.scrollWidth of `page` in a window `width` px wide, from a copy beside it
    that writes it into its title (the page itself runs no scripts)."""
    html = page.read_text(encoding="utf-8")
    if open_details:
        html = html.replace("<details", "<details open")
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(
        html.replace(
            "</body>", "<script>document.title = 'width=' + document.documentElement.scrollWidth</script></body>"
        ),
        encoding="utf-8",
    )
    try:
        proc = headless(browser, work, "--dump-dom", probe.as_uri(), width=width)
    finally:
        probe.unlink()
    found = re.search(r"<title>width=(\d+)</title>", proc.stdout)
    assert found, proc.stderr[-2000:]
    return int(found[1])
