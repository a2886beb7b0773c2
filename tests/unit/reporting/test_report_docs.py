"""The dbt docs page and the source freshness in the reports, on real
components: dbt builds the warehouse from the small data set of
test_warehouse.py, the build records freshness and the docs page, the GX gate
judges the candidate set, and publishing writes the reports and the index.

Two nights are published (the same project, so one page), and a third run is
withheld from a hand-made set that has neither record."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest
from helpers.marts import write_audit
from helpers.offline_page import chromium, external_loads, page_requests
from helpers.warehouse_raw import LAST_DS, small_set, write_nights

from program_reporting.core.settings import paths as settings_paths
from program_reporting.publishing.wap import audit_and_publish
from program_reporting.warehouse import build as build_mod

pytestmark = pytest.mark.timeout(900)
FIRST_NIGHT = "2020-04-23"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_docs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAM_REPORTING_DROP", str(root / "drop"))
        mp.setenv("PROGRAM_REPORTING_HOME", str(root / "home"))
        mp.delenv("PROGRAM_REPORTING_WEBHOOK_URL", raising=False)
        p = settings_paths()
        data = small_set()
        outcomes = {}
        for run_id, ds in (("n1", FIRST_NIGHT), ("n2", LAST_DS)):
            write_nights(p.raw, data, through=ds, since="2020-04-15" if run_id == "n1" else ds)
            build_mod.build(ds, run_id, paths=p)
            build_mod.stage_audit(run_id, ds, paths=p)
            # the deliveries are the warehouse tests' hand-made partitions: no drop files for the landed gate
            outcomes[run_id] = audit_and_publish(run_id, ds, paths=p, landed=False)
        write_audit(p, "w3", "2020-06-05", fresh=False)
        outcomes["w3"] = audit_and_publish("w3", "2020-06-05", paths=p, landed=False)
        yield p, outcomes


def report(p, run_id) -> dict:
    return json.loads((p.reports / run_id / "report.json").read_text())


def test_published_runs_link_one_page_for_the_same_project(reports):
    p, outcomes = reports
    assert outcomes["n1"].published and outcomes["n2"].published, (outcomes["n1"].reason, outcomes["n2"].reason)
    first, second = report(p, "n1"), report(p, "n2")
    assert first["dbt_docs"] == second["dbt_docs"] == f"catalog/{first['dbt_docs_sha256']}.html"
    pages = sorted((p.reports / "catalog").iterdir())
    assert [f.name for f in pages] == [f"{first['dbt_docs_sha256']}.html"]  # one file, not one per night
    page = pages[0]
    assert hashlib.sha256(page.read_bytes()).hexdigest() == first["dbt_docs_sha256"]  # named by its content
    assert stat.S_IMODE(page.stat().st_mode) == 0o444
    for run_id in ("n1", "n2"):
        html = (p.reports / run_id / "report.html").read_text()
        assert f'<a href="../catalog/{first["dbt_docs_sha256"]}.html" id="dbt-docs-link">' in html
        assert (p.reports / run_id / "../catalog" / page.name).resolve() == page.resolve()


def test_the_index_links_each_runs_docs(reports):
    p, _ = reports
    index = (p.reports / "index.html").read_text()
    entries = {e["run_id"]: e for e in map(json.loads, (p.reports / "index.jsonl").read_text().splitlines())}
    assert entries["n1"]["dbt_docs"] == entries["n2"]["dbt_docs"]
    assert entries["w3"]["dbt_docs"] is None
    assert index.count(f'<a href="{entries["n1"]["dbt_docs"]}" class="dbt-docs">dbt docs</a>') == 2
    assert (p.reports / entries["n1"]["dbt_docs"]).is_file()


def test_reports_show_the_source_freshness(reports):
    p, _ = reports
    doc = report(p, "n2")
    fresh = doc["source_freshness"]
    assert fresh["record"] == "audit/n2/source_freshness.json"
    assert {s["source"]: s["status"] for s in fresh["sources"]} == {
        "raw.credit_events": "pass",
        "raw.employment_reports": "pass",
        "raw.merchants": "pass",
    }
    marts = next(g for g in doc["gates"] if g["stage"] == "marts")
    sf = {c["id"]: c for c in marts["results"] if c["suite"] == "source_freshness"}
    assert {k: (c["severity"], c["status"]) for k, c in sf.items()} == {
        "sf_within_error_after": ("critical", "passed"),
        "sf_within_warn_after": ("warning", "passed"),
    }
    html = (p.reports / "n2" / "report.html").read_text()
    assert '<section id="source-freshness">' in html and html.count('class="freshness-pass"') == 3


def test_a_run_without_records_is_withheld_and_says_so(reports):
    p, outcomes = reports
    assert not outcomes["w3"].published
    assert "source_freshness/sf_within_error_after" in outcomes["w3"].reason
    doc = report(p, "w3")
    assert doc["dbt_docs"] is None and "staged no dbt docs page" in doc["dbt_docs_note"]
    assert doc["source_freshness"] is None
    html = (p.reports / "w3" / "report.html").read_text()
    assert "No dbt docs:" in html and "No freshness record was read for this run" in html


def test_the_published_page_loads_nothing_from_the_network(reports, tmp_path):
    """In a real browser, served over HTTP: every request the page makes stays on
    its own server. The same page with usage statistics switched on asks
    dbt's CDN for its tracker, which shows the check would see it."""
    p, _ = reports
    browser = chromium()
    if not browser:
        pytest.skip("chromium is not installed here (CI installs it): cannot open the page in a browser")
    page = next((p.reports / "catalog").iterdir())
    html = page.read_text(encoding="utf-8")
    assert external_loads(html) == []
    origin, requested, dom = page_requests(browser, p.reports, f"catalog/{page.name}", tmp_path / "page")
    assert 'data-nav-unique-id="model.program_reporting.kpi_program_daily"' in dom  # its scripts ran
    assert all(url.startswith(f"{origin}/") for url in requested), requested

    control = tmp_path / "control"
    control.mkdir()
    flag = '"send_anonymous_usage_stats":false'
    assert html.count(flag) == 1
    (control / "tracked.html").write_text(html.replace(flag, '"send_anonymous_usage_stats":true'), encoding="utf-8")
    _, requested, _ = page_requests(browser, control, "tracked.html", tmp_path / "tracked")
    assert any("cloudfront.net" in url for url in requested), requested
