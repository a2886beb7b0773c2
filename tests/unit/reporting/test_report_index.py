"""The report index at 200 runs: static pages of 50, lists by decision and by
business month, links between them, stale pages removed, and nothing wider
than a 1280 px window in headless Chromium (with a screenshot).

The entries are synthesised, shaped like index.jsonl's lines (long withheld
reasons, both kinds of Airflow run id, full SHA-256 values); test_report.py and
test_verify.py cover index lines the real code writes."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import struct
from pathlib import Path

import pytest
from helpers.offline_page import chromium
from helpers.page_width import WIDTH, headless, scroll_width

from program_reporting.reporting.report import PAGE_SIZE, index_pages, write_index_pages

RUNS = 200
SCREENSHOT_COPY = Path("/tmp/index-200-runs.png")  # for the closing note of issue 26
WITHHELD_REASON = (
    "marts gate: kpi_segment_daily/sd_segments_sum_to_program, kpi_program_daily/pd_no_cn_mobile, "
    "kpi_program_daily/pd_columns, source_freshness/sf_within_error_after; landed gate: "
    "landed_credit_events.rows_match_control_count_of_the_delivery_file_as_delivered_by_the_source_system"
)


def entries(n: int = RUNS) -> list[dict]:
    """n nightly runs from 2020-01-01 on, one a day, every sixth withheld, in the order they were indexed."""
    out = []
    for i in range(n):
        ds = dt.date(2020, 1, 1) + dt.timedelta(days=i)
        written = dt.datetime.combine(ds + dt.timedelta(days=1), dt.time(2, i % 7), tzinfo=dt.UTC)
        withheld = i % 6 == 0

        def sha(kind: str, i: int = i) -> str:
            return hashlib.sha256(f"{kind}{i}".encode()).hexdigest()

        out.append(
            {
                "prev_sha256": sha("line"),
                "run_id": f"{ds}_{written:%Y%m%dT%H%M%SZ}",
                "ds": ds.isoformat(),
                "airflow_run_id": f"scheduled__{ds}T18:00:00+00:00" if i % 5 else f"manual__{written.isoformat()}",
                "written_at": written.isoformat(timespec="seconds"),
                "decision": "withheld" if withheld else "published",
                "reason": WITHHELD_REASON if withheld else "every critical check passed",
                "critical_failures": 4 if withheld else 0,
                "warnings": i % 4,
                "dbt_docs": None if withheld else f"catalog/{sha('docs', i // 30)}.html",
                "report_json_sha256": sha("json"),
                "report_html_sha256": sha("html"),
                "sha256sums_sha256": sha("sums"),
            }
        )
    return out


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("index") / "reports"
    folder.mkdir()
    # an index of an earlier page size, and a file that is no page: the first goes, the second stays
    for stale in ("index-9.html", "withheld-3.html", "ds-1999-01.html"):
        (folder / stale).write_text("stale")
    (folder / "notes.html").write_text("not a page of the index")
    write_index_pages(folder, index_pages(entries()))
    return folder


def links(page: Path) -> list[str]:
    return re.findall(r'href="([^"#]+\.html)"', page.read_text(encoding="utf-8"))


def runs_on(page: Path) -> list[str]:
    return re.findall(r'<tr class="\w+" id="run-([^"]+)"', page.read_text(encoding="utf-8"))


def test_pages_of_fifty_newest_first_and_stale_pages_gone(pages):
    names = {f.name for f in pages.iterdir()}
    withheld = -(-len([e for e in entries() if e["decision"] == "withheld"]) // PAGE_SIZE)
    assert {"index.html", "index-2.html", "index-3.html", "index-4.html"} <= names
    assert "index-5.html" not in names and PAGE_SIZE == 50
    assert {f"withheld{'' if n == 1 else f'-{n}'}.html" for n in range(1, withheld + 1)} <= names
    assert not {"index-9.html", "withheld-3.html", "ds-1999-01.html"} & names
    assert "notes.html" in names
    every = [run for n in ("index.html", "index-2.html", "index-3.html", "index-4.html") for run in runs_on(pages / n)]
    newest_first = [e["run_id"] for e in sorted(entries(), key=lambda e: e["written_at"], reverse=True)]
    assert every == newest_first
    # the lists by decision and by business month hold exactly their runs
    listed = [run for f in sorted(pages.glob("withheld*.html")) for run in runs_on(f)]
    assert sorted(listed) == sorted(e["run_id"] for e in entries() if e["decision"] == "withheld")
    june = runs_on(pages / "ds-2020-06.html")
    assert len(june) == 30 and all(run.startswith("2020-06-") for run in june)


def test_pages_link_each_other_and_nothing_else(pages):
    assert "index-2.html" in links(pages / "index.html")
    assert {"index.html", "index-3.html"} <= set(links(pages / "index-2.html"))
    assert {"withheld.html", "published.html", "ds-2020-07.html", "ds-2020-01.html"} <= set(links(pages / "index.html"))
    for page in pages.glob("*.html"):
        for target in links(page):
            if "/" not in target:  # the other pages of the index (reports and dbt docs are in folders)
                assert (pages / target).is_file(), f"{page.name} links {target}, which is not there"
    page = (pages / "index.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", page, re.I)


def test_nothing_overflows_at_1280_px_in_headless_chromium(pages, tmp_path):
    browser = chromium()
    if not browser:
        pytest.skip("chromium is not installed here (CI installs it): cannot render the index")
    wide = tmp_path / "wide.html"  # the measure sees an overflow when there is one
    wide.write_text(
        '<!DOCTYPE html><html><head><title>x</title></head><body><div style="width:3000px">x</div></body></html>'
    )
    assert scroll_width(browser, wide, tmp_path) > WIDTH
    for name in ("index.html", "index-4.html", "withheld.html", "ds-2020-07.html"):
        assert scroll_width(browser, pages / name, tmp_path) <= WIDTH, name
        # the SHA-256 and reasons opened, full length: they wrap
        assert scroll_width(browser, pages / name, tmp_path, open_details=True) <= WIDTH, name

    shot = tmp_path / "index-200-runs.png"
    proc = headless(browser, tmp_path, f"--screenshot={shot}", (pages / "index.html").as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])  # PNG IHDR
    assert (width, height) == (WIDTH, 1600)
    shutil.copyfile(shot, SCREENSHOT_COPY)
