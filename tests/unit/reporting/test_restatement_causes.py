"""Restatements without dbt: the cell counts of core/published.py, the night's causes
read from hand-made raw partitions (one rule at a time, at the edges of the
window), the section of a withheld run, and the caps of a large one.
tests/unit/reporting/test_report_restatements.py runs the real pipeline."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter

import duckdb
import pytest
from helpers.marts import mutate, write_audit

from program_reporting.core import published as history
from program_reporting.publishing.wap import audit_and_publish
from program_reporting.reporting import report as reporting
from program_reporting.reporting import restatements

UTC = dt.UTC
SINCE = dt.datetime(2020, 6, 5, 20, 0, tzinfo=UTC)  # the previous set was built
UNTIL = dt.datetime(2020, 6, 6, 20, 0, tzinfo=UTC)  # this night's set was built
THROUGH = dt.date(2020, 6, 5)  # the previous set's last date
BEFORE, INSIDE, AFTER = "2020-06-05T12:00:00+00:00", "2020-06-06T18:00:00+00:00", "2020-06-06T21:00:00+00:00"
SPARK, SPRING = "SPARK-2020", "SPRING-THUNDER-2020"

COLUMNS = {
    "merchants": "merchant_id VARCHAR, program_code VARCHAR, enrolled_on DATE, updated_at TIMESTAMPTZ",
    "credit_events": "merchant_id VARCHAR, event_at TIMESTAMPTZ",
    "employment_reports": "merchant_id VARCHAR, period_month DATE",
}


def partition(home, source: str, ds: str, rows: list[tuple], landed_at: str, name: str = "rows.parquet", **record):
    """A raw partition as landing leaves it: a parquet file of typed rows
    (only the columns restatements read), then its record."""
    part = home / "raw" / source / f"ds={ds}"
    part.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t ({COLUMNS[source]}, _ds DATE, _landed_at TIMESTAMPTZ)")
        for r in rows:
            con.execute(f"INSERT INTO t VALUES ({', '.join('?' * (len(r) + 2))})", [*r, ds, landed_at])
        con.execute(f"COPY t TO '{part / name}' (FORMAT parquet)")
    finally:
        con.close()
    if name == "rows.parquet":
        doc = {"source": source, "ds": ds, "file": f"{source}/ds={ds}/{source}.csv", "sha256": "a" * 64}
        doc.update({"loaded": len(rows), "landed_at": landed_at, "touches_from": None, **record})
        (part / "_reconciliation.json").write_text(json.dumps(doc))
    return part


def add_release(part, release_ds: str, at: str, released: int) -> None:
    record_file = part / "_reconciliation.json"
    doc = json.loads(record_file.read_text())
    doc.setdefault("releases", []).append(
        {"ds": release_ds, "released": released, "quarantined": 0, "at": at, "touches_from": "2020-06-01"}
    )
    record_file.write_text(json.dumps(doc))


@pytest.fixture
def night(env_paths):
    home = env_paths.home
    # what the previous publication already had
    partition(home, "merchants", "2020-06-04", [("M1", SPARK, "2020-06-01", "2020-06-04T01:00:00+00:00")], BEFORE)
    partition(home, "employment_reports", "2020-06-05", [("M1", "2020-06-01")], BEFORE)
    partition(home, "merchants", "2020-06-05", [("M2", SPARK, "2020-06-05", "2020-06-05T01:00:00+00:00")], INSIDE)
    # new tonight: a first delivery of each source
    partition(
        home,
        "merchants",
        "2020-06-06",
        [
            ("M1", SPARK, "2020-06-01", "2020-06-04T17:00:00+00:00"),  # known: from its update, 06-05 in Shanghai
            ("M7", SPRING, "2020-06-03", "2020-06-06T01:00:00+00:00"),  # new: from its enrolment
            ("M8", SPARK, "2020-06-06", "2020-06-06T01:00:00+00:00"),  # new on 06-06: restates nothing
        ],
        INSIDE,
    )
    partition(
        home,
        "credit_events",
        "2020-06-06",
        [("M1", "2020-06-04T23:30:00+00:00"), ("M7", "2020-06-06T02:00:00+00:00")],  # 06-05 and 06-06 locally
        INSIDE,
    )
    partition(home, "employment_reports", "2020-06-06", [("M1", "2020-06-01"), ("M7", "2020-06-01")], INSIDE)
    # an earlier date delivered again: other content, and the same
    partition(
        home, "credit_events", "2020-06-03", [("M1", "2020-06-03T02:00:00+00:00")], INSIDE, touches_from="2020-06-02"
    )
    # held rows of 06-04 released twice: before the previous build, and tonight
    held = partition(home, "credit_events", "2020-06-04", [("M1", "2020-06-04T02:00:00+00:00")], BEFORE)
    partition(
        home,
        "credit_events",
        "2020-06-04",
        [("M2", "2020-06-05T02:00:00+00:00")],
        INSIDE,
        name="released-2020-06-06.parquet",
    )
    add_release(held, "2020-06-05", BEFORE, 1)  # no file of its own left: an older release
    add_release(held, "2020-06-06", INSIDE, 1)
    # landed after this night's set was built: not its cause
    partition(home, "employment_reports", "2020-06-07", [("M1", "2020-06-01")], AFTER)
    previous = {
        ("merchants", "2020-06-05"): {"sha256": "a" * 64, "loaded": 1},
        ("credit_events", "2020-06-03"): {"sha256": "b" * 64, "loaded": 1},
    }
    return env_paths, previous


def by_id(causes) -> dict:
    return {c.id: c for c in causes}


def test_each_delivery_of_the_night_is_classified(night):
    p, previous = night
    causes = by_id(restatements.night_causes(p, SINCE, UNTIL, THROUGH, previous, "2020-06-05"))
    assert {cid: (c.kind, c.delivery_rows) for cid, c in causes.items()} == {
        "late_posting:merchants:ds=2020-06-06": ("late_posting", 2),
        "late_posting:credit_events:ds=2020-06-06": ("late_posting", 1),
        "late_posting:employment_reports:ds=2020-06-06": ("late_posting", 1),
        "correction:employment_reports:ds=2020-06-06": ("correction", 1),
        "correction:credit_events:ds=2020-06-03": ("correction", 1),
        "re_delivery:merchants:ds=2020-06-05": ("re_delivery", 1),
        "released:credit_events:ds=2020-06-04:by=2020-06-06": ("released", 1),
    }
    d = dt.date.fromisoformat
    assert causes["late_posting:merchants:ds=2020-06-06"].reach == {SPARK: d("2020-06-05"), SPRING: d("2020-06-03")}
    # the local date in the program's time zone, not the UTC date
    assert causes["late_posting:credit_events:ds=2020-06-06"].reach == {SPARK: d("2020-06-05")}
    assert causes["late_posting:employment_reports:ds=2020-06-06"].reach == {SPRING: d("2020-06-01")}
    assert causes["correction:employment_reports:ds=2020-06-06"].reach == {SPARK: d("2020-06-01")}
    assert causes["correction:credit_events:ds=2020-06-03"].reach == {None: d("2020-06-02")}
    assert causes["re_delivery:merchants:ds=2020-06-05"].reach == {}
    assert causes["released:credit_events:ds=2020-06-04:by=2020-06-06"].reach == {SPARK: d("2020-06-05")}
    # the rule: program and date
    late = causes["late_posting:merchants:ds=2020-06-06"]
    assert late.touches(SPRING, d("2020-06-03")) and not late.touches(SPRING, d("2020-06-02"))
    assert not late.touches(SPARK, d("2020-06-04")) and late.touches(SPARK, d("2020-06-05"))
    assert causes["correction:credit_events:ds=2020-06-03"].touches("PPP-2020", d("2020-06-02"))


def test_without_the_previous_report_a_date_landed_again_is_a_correction(night):
    p, _ = night
    causes = by_id(restatements.night_causes(p, SINCE, UNTIL, THROUGH, None, "2020-06-05"))
    assert causes["correction:merchants:ds=2020-06-05"].kind == "correction"
    # its record does not say how far back it reaches (landing always does): every date
    assert causes["correction:merchants:ds=2020-06-05"].reach == {None: dt.date.min}
    assert "late_posting:merchants:ds=2020-06-06" in causes  # after the previous ds: a first delivery


def test_history_counts_what_diff_sets_lists(env_paths):
    old = write_audit(env_paths, "a", "2020-06-06")
    new = write_audit(env_paths, "b", "2020-06-07", bump=1)
    mutate(new, "DELETE FROM kpi_segment_daily WHERE region = 'US-NY' AND as_of_date = DATE '2020-06-03'")
    changes = history.diff_sets(old, new, before="2020-06-06")
    counts = history.diff_counts(old, new, before="2020-06-06")
    cells = Counter((c.table, c.key_value("program_code"), c.key_value("as_of_date")) for c in changes)
    rows = Counter(
        (c.table, c.key_value("program_code"), c.key_value("as_of_date"))
        for c in {(c.table, c.key): c for c in changes}.values()
    )
    assert {(n.table, n.program_code, n.as_of_date): (n.rows, n.cells) for n in counts} == {
        k: (rows[k], n) for k, n in cells.items()
    }
    assert max(n.as_of_date for n in counts) == "2020-06-05"
    for table in history.KPI_TABLES:
        listed = [c for c in changes if c.table == table]
        assert [c for c in history.diff_sets(old, new, before="2020-06-06", limit=5) if c.table == table] == listed[:5]


def test_a_withheld_run_says_its_restatements_were_not_published(env_paths, monkeypatch):
    p = env_paths
    monkeypatch.delenv("PROGRAM_REPORTING_WEBHOOK_URL", raising=False)
    write_audit(p, "r1", "2020-06-05")
    assert audit_and_publish("r1", "2020-06-05", paths=p, landed=False).published
    write_audit(p, "r2", "2020-06-06", bump=1)
    mutate(
        p.audit / "r2" / "kpi.duckdb",
        "UPDATE kpi_program_daily SET enrolled_merchants = enrolled_merchants + 1 WHERE as_of_date = DATE '2020-06-04'",
    )
    # listed capped, counted exactly
    monkeypatch.setattr(restatements, "CELLS_LISTED", 7)
    monkeypatch.setattr(reporting, "CELLS_SHOWN", 3)
    outcome = audit_and_publish("r2", "2020-06-06", paths=p, landed=False)
    assert not outcome.published
    doc = json.loads((p.reports / "r2" / "report.json").read_text())
    section = doc["restatements"]
    assert section["published"] is False and section["compared_through"] == "2020-06-05"
    expected = history.diff_sets(p.runs / "r1" / "kpi.duckdb", p.audit / "r2" / "kpi.duckdb", before="2020-06-06")
    assert section["cells"] == len(expected) > 7 * 3
    for table in section["tables"]:
        assert table["listed"] == len(table["changes"]) == min(7, table["cells"])
    # nothing landed since the previous set: every cell is unexplained
    assert [k["kind"] for k in section["causes"]] == ["none"] and section["causes"][0]["cells"] == len(expected)
    html = outcome.report_path.read_text()
    assert re.findall(r'<section id="([^"]+)"', html)[0] == "restatements"
    assert "These restatements were NOT published" in html
    assert "The first 3 of" in html and html.count('<td class="key">') == 3 * len(section["tables"])
