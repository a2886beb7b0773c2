"""Validation reports: contents, write-once, the index, and the HTML in a real browser."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat

import pytest
from helpers.landed import land, land_all
from helpers.marts import mutate, write_audit
from helpers.page_width import WIDTH, headless, scroll_width

from program_reporting.core.settings import paths
from program_reporting.publishing.wap import audit_and_publish
from program_reporting.reporting.report import ReportExists, write_report

DS = "2020-06-05"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """r1 published, r2 withheld (segments off, an owner's phone in a text column).

    Built once for the module: the tests only read it."""
    root = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAM_REPORTING_DROP", str(root / "drop"))
        mp.setenv("PROGRAM_REPORTING_HOME", str(root / "home"))
        mp.delenv("PROGRAM_REPORTING_WEBHOOK_URL", raising=False)
        yield _two_runs(paths())


def _two_runs(env_paths):
    land_all(env_paths.home, "2020-06-04")
    land_all(env_paths.home, DS)
    land(env_paths.home, "credit_events", DS, rows=10, quarantined=3, held=2)
    failures = env_paths.home / "landing_failures" / "merchants"
    failures.mkdir(parents=True)
    (failures / "ds=2020-06-05.json").write_text(
        json.dumps(
            {
                "source": "merchants",
                "ds": DS,
                "file": "merchants/ds=2020-06-05/merchants.csv",
                "error": "control row_count 12 but the file has 11 rows",
                "failed_at": "2020-06-05T23:10:00+00:00",
            }
        )
    )
    write_audit(env_paths, "r1", DS)
    first = audit_and_publish("r1", DS, airflow_run_id="scheduled__2020-06-05T00:00:00+00:00", paths=env_paths)
    assert first.published, first.reason
    db = write_audit(env_paths, "r2", DS, bump=1)
    mutate(
        db,
        "UPDATE kpi_segment_daily SET outstanding_balance = outstanding_balance + 3 "
        "WHERE region = 'CN-ZJ' AND as_of_date = DATE '2020-06-04'",
        "ALTER TABLE kpi_program_daily ADD COLUMN remark VARCHAR",
        "UPDATE kpi_program_daily SET remark = 'owner Li, mobile 13912345678'",
    )
    second = audit_and_publish("r2", DS, paths=env_paths)
    assert not second.published
    return env_paths


def test_report_json_has_what_compliance_signs_off(two_runs):
    p = two_runs
    doc = json.loads((p.reports / "r1" / "report.json").read_text())
    assert doc["run_id"] == "r1" and doc["ds"] == DS
    assert doc["airflow_run_id"] == "scheduled__2020-06-05T00:00:00+00:00"
    assert doc["decision"] == "published" and doc["published_path"] == "published/runs/r1/kpi.duckdb"
    # deliveries used: all in force up to ds, with checksums and the reconciliation
    assert {(d["source"], d["ds"]) for d in doc["deliveries"]} == {
        (s, d) for s in ("merchants", "credit_events", "employment_reports") for d in ("2020-06-04", DS)
    }
    ce = next(d for d in doc["deliveries"] if d["source"] == "credit_events" and d["ds"] == DS)
    assert (ce["delivered"], ce["loaded"], ce["quarantined"], ce["held"], ce["balanced"]) == (15, 10, 3, 2, True)
    assert len(ce["sha256"]) == 64
    assert doc["quarantine_reasons"] == {"amount_negative": 3}
    assert doc["landing_failures"][0]["error"].startswith("control row_count 12")
    stages = [g["stage"] for g in doc["gates"]]
    assert stages == ["landed", "marts"]
    checks = [c for g in doc["gates"] for c in g["results"]]
    assert len(checks) > 120
    for c in checks:
        assert c["severity"] in ("critical", "warning")
        assert c["status"] in ("passed", "failed", "not evaluated", "skipped")
        assert "observed_value" in c
    assert doc["summary"]["critical_failures"] == 0


def test_withheld_report_names_the_failures_without_personal_data(two_runs):
    p = two_runs
    doc = json.loads((p.reports / "r2" / "report.json").read_text())
    assert doc["decision"] == "withheld"
    blocking = {c["id"]: c for g in doc["gates"] for c in g["results"] if c["blocking"]}
    assert {"sd_segments_sum_to_program", "pd_no_cn_mobile", "pd_columns"} <= set(blocking)
    for rule in ("sd_segments_sum_to_program", "pd_no_cn_mobile"):
        assert rule in doc["reason"]
    row = blocking["sd_segments_sum_to_program"]["failing_rows"][0]
    assert row["metric"] == "outstanding_balance" and row["as_of_date"] == "2020-06-04"
    for path in (p.reports / "r2").rglob("*"):
        if path.is_file():
            assert b"13912345678" not in path.read_bytes(), path
    assert b"13912345678" not in (p.home / "alerts.log").read_bytes()


def test_html_is_self_contained_and_links_data_docs(two_runs):
    p = two_runs
    page = (p.reports / "r2" / "report.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", page, re.I)
    assert not re.search(r"(src|href)=\"?(https?:)?//", page, re.I)
    assert 'href="data_docs/index.html"' in page
    docs = p.reports / "r2" / "data_docs"
    assert (docs / "index.html").exists()
    validation_pages = list((docs / "validations").rglob("*.html"))
    assert any("kpi_segment_daily" in str(v) for v in validation_pages)


def test_reports_are_write_once(two_runs):
    p = two_runs
    files = {f: f.read_bytes() for f in (p.reports / "r1").rglob("*") if f.is_file()}
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o444 for f in files)
    index_before = (p.reports / "index.jsonl").read_bytes()
    with pytest.raises(ReportExists):
        write_report("r1", DS, [], published=False, reason="again", paths=p)
    assert {f: f.read_bytes() for f in files} == files
    assert (p.reports / "index.jsonl").read_bytes() == index_before


def test_index_lists_runs_newest_first_with_checksums(two_runs):
    p = two_runs
    entries = [json.loads(line) for line in (p.reports / "index.jsonl").read_text().splitlines()]
    assert [e["run_id"] for e in entries] == ["r1", "r2"]
    for e in entries:
        for name in ("report.json", "report.html"):
            digest = hashlib.sha256((p.reports / e["run_id"] / name).read_bytes()).hexdigest()
            assert e[f"{name.replace('.', '_')}_sha256"] == digest
    page = (p.reports / "index.html").read_text()
    assert page.index('id="run-r2"') < page.index('id="run-r1"')
    assert "withheld" in page and "published" in page
    assert entries[1]["report_html_sha256"] in page


def test_withheld_report_in_headless_chromium_shows_the_failing_check(two_runs, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed here (CI installs it): cannot render the HTML report")
    report = two_runs.reports / "r2" / "report.html"
    proc = headless(browser, tmp_path, "--dump-dom", report.as_uri())
    dom = proc.stdout
    assert "<html" in dom, proc.stderr[-2000:]
    block = re.search(
        r'<div class="check critical" id="check-kpi_segment_daily-sd_segments_sum_to_program"'
        r"[^>]*>(.*?)</div>",
        dom,
        re.S,
    )
    assert block, "the failing check is not an element of the rendered page"
    assert 'id="blocking-failures"' in dom
    assert re.search(r'id="decision" class="decision withheld"', dom)
    assert "13912345678" not in dom


def test_reports_do_not_scroll_sideways_at_1280_px(two_runs, tmp_path):
    """A compliance reader's laptop window: full SHA-256 values, delivery paths, long rule and
    check names wrap inside their cells instead of widening the page."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed here (CI installs it): cannot render the HTML report")
    for run in ("r1", "r2"):
        report = two_runs.reports / run / "report.html"
        assert re.search(r"<code>[0-9a-f]{64}</code>", report.read_text()), "the report shows a delivery's full SHA-256"
        assert scroll_width(browser, report, tmp_path) <= WIDTH, run
