"""Restatements in the reports, on a real pipeline: landing from drop folders,
dbt builds the warehouse, the gates judge the candidate set, publishing
writes the reports, the brief follows.

Three nights of two programs:

- 2020-06-03, the first publication: SPARK merchants M1 and M2 with their
  credit lines and June reports, SPRING merchant M5; the credit events of an
  unknown merchant M9 are held.
- 2020-06-04: a late posting (an M1 drawdown of 06-03, an M5 drawdown of
  06-03), a new merchant M9 enrolled on 06-02 (its held events are released),
  M2's June report re-reported (a correction), the credit events of 06-03
  delivered again with M2's drawdown corrected, and the merchants of 06-03
  landed again unchanged.
- 2020-06-05: only rows of that day: nothing is restated.

The report of 06-04 must list exactly the cells diff_sets (core/published.py) finds
between the two published sets before 06-04, each with the deliveries that
explain it."""

from __future__ import annotations

import json
import re

import pytest
from helpers.deliveries import row, write_delivery

from program_reporting.core import published as history
from program_reporting.core.settings import paths as settings_paths
from program_reporting.landing import land as landing
from program_reporting.publishing.wap import audit_and_publish
from program_reporting.reporting import brief
from program_reporting.warehouse import build as build_mod

pytestmark = pytest.mark.timeout(900)
D1, D2, D3 = "2020-06-03", "2020-06-04", "2020-06-05"
SPARK, SPRING = "SPARK-2020", "SPRING-THUNDER-2020"


def merchant(mid: str, program: str, region: str, enrolled: str, updated: str) -> dict:
    return row(
        "merchants",
        merchant_id=mid,
        program_code=program,
        region=region,
        business_type="exporter" if program == SPRING else "grocery",
        size_class="small",
        registered_on="2019-01-01",
        enrolled_on=enrolled,
        updated_at=updated,
    )


def event(eid: str, line: str, mid: str, kind: str, at: str, amount: str) -> dict:
    return row(
        "credit_events",
        event_id=eid,
        credit_line_id=line,
        merchant_id=mid,
        event_type=kind,
        event_at=at,
        amount=amount,
        annual_interest_rate="0" if kind == "line_opened" else "",
        due_on="2020-07-31" if kind == "drawdown" else "",
        goods_category="food" if kind == "drawdown" else "",
    )


def report_row(rid: str, mid: str, employees: int, at: str) -> dict:
    return row(
        "employment_reports",
        report_id=rid,
        merchant_id=mid,
        period_month="2020-06",
        employees=str(employees),
        baseline_employees="5",
        reported_at=at,
    )


MERCHANTS_D1 = [
    merchant("M1", SPARK, "CN-GD", "2020-06-02", "2020-06-02T09:00:00+08:00"),
    merchant("M2", SPARK, "CN-ZJ", "2020-06-02", "2020-06-03T09:00:00+08:00"),
    merchant("M5", SPRING, "CN-ZJ", "2020-06-02", "2020-06-02T09:00:00+08:00"),
]
CREDIT_D1 = [
    event("E1", "L1", "M1", "line_opened", "2020-06-02T10:00:00+08:00", "100000.00"),
    event("E2", "L1", "M1", "drawdown", "2020-06-02T11:00:00+08:00", "1200.50"),
    event("E3", "L2", "M2", "line_opened", "2020-06-03T10:00:00+08:00", "50000.00"),
    event("E4", "L2", "M2", "drawdown", "2020-06-03T11:00:00+08:00", "500.00"),
    event("E50", "L5", "M5", "line_opened", "2020-06-02T10:00:00+08:00", "80000.00"),
    event("E51", "L5", "M5", "drawdown", "2020-06-02T12:00:00+08:00", "700.00"),
    # M9 is unknown until 06-04: held, then released
    event("E8", "L9", "M9", "line_opened", "2020-06-02T10:00:00+08:00", "20000.00"),
    event("E9", "L9", "M9", "drawdown", "2020-06-02T15:00:00+08:00", "300.00"),
]
REPORTS_D1 = [
    report_row("R1", "M1", 4, "2020-06-03T18:00:00+08:00"),
    report_row("R2", "M2", 3, "2020-06-03T18:00:00+08:00"),
]

NIGHTS = {
    D1: {"merchants": MERCHANTS_D1, "credit_events": CREDIT_D1, "employment_reports": REPORTS_D1},
    D2: {
        "merchants": [merchant("M9", SPARK, "CN-GD", "2020-06-02", "2020-06-04T08:00:00+08:00")],
        "credit_events": [
            event("E5", "L1", "M1", "drawdown", "2020-06-03T15:00:00+08:00", "250.00"),  # late: dated 06-03
            event("E52", "L5", "M5", "drawdown", "2020-06-03T16:00:00+08:00", "90.00"),  # late, SPRING
            event("E6", "L1", "M1", "repayment", "2020-06-04T10:00:00+08:00", "100.00"),
        ],
        "employment_reports": [report_row("R3", "M2", 2, "2020-06-04T18:00:00+08:00")],  # re-reports M2's June
    },
    D3: {
        "merchants": [],
        "credit_events": [event("E7", "L2", "M2", "repayment", "2020-06-05T10:00:00+08:00", "50.00")],
        "employment_reports": [],
    },
}
# delivered again on the night of 06-04: M2's drawdown of 06-03 corrected from 500.00 to 800.00
CREDIT_D1_CORRECTED = [
    dict(e, amount="800.00") if e["event_id"] == "E4" else e for e in CREDIT_D1 if e["merchant_id"] != "M9"
] + [e for e in CREDIT_D1 if e["merchant_id"] == "M9"]


def _night(p, run_id: str, ds: str, again: tuple[str, ...] = ()) -> object:
    for source, rows in NIGHTS[ds].items():
        write_delivery(p.drop, source, ds, rows)
        landing.land(source, ds, paths=p)
    for source in again:  # earlier dates the night lands again (the drop holds their current delivery)
        landing.land(source, D1, paths=p)
    landing.release_orphans(ds, paths=p)
    build_mod.build(ds, run_id, paths=p)
    build_mod.stage_audit(run_id, ds, paths=p)
    outcome = audit_and_publish(run_id, ds, paths=p)
    assert outcome.published, outcome.reason
    return outcome


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    root = tmp_path_factory.mktemp("restatements")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAM_REPORTING_DROP", str(root / "drop"))
        mp.setenv("PROGRAM_REPORTING_HOME", str(root / "home"))
        mp.delenv("PROGRAM_REPORTING_WEBHOOK_URL", raising=False)
        p = settings_paths()
        p.drop.mkdir(parents=True)
        _night(p, "n1", D1)
        first_set = p.runs / "n1" / "kpi.duckdb"
        write_delivery(p.drop, "credit_events", D1, CREDIT_D1_CORRECTED)
        _night(p, "n2", D2, again=("credit_events", "merchants"))
        second_brief = brief.write_brief(p).read_text(encoding="utf-8")
        _night(p, "n3", D3)
        yield p, first_set, second_brief


def report(p, run_id: str) -> dict:
    return json.loads((p.reports / run_id / "report.json").read_text(encoding="utf-8"))


def causes_of(section: dict) -> dict[str, dict]:
    return {d["id"]: {**d, "kind": k["kind"]} for k in section["causes"] for d in k["deliveries"]}


def test_the_report_lists_exactly_the_cells_that_changed(nights):
    p, _, _ = nights
    section = report(p, "n2")["restatements"]
    assert section["status"] == "computed" and section["published"] is True
    assert section["previous_run"]["run_id"] == "n1" and section["compared_through"] == D1
    # computed here on their own: the two published sets, dates before the second night's ds
    expected = history.diff_sets(p.runs / "n1" / "kpi.duckdb", p.runs / "n2" / "kpi.duckdb", before=D2)
    assert expected, "the second night restates nothing: the test proves nothing"
    listed = {(t["table"], c["key"], c["column"], c["old"], c["new"]) for t in section["tables"] for c in t["changes"]}
    assert listed == {(c.table, c.key_text, c.column, c.old, c.new) for c in expected}
    assert section["cells"] == len(expected) == sum(t["cells"] for t in section["tables"])
    assert section["rows"] == len({(c.table, c.key) for c in expected})
    # drawn to date: M9's drawdown (held, released) on 06-02; with E4 corrected to 800.00 and E5 posted late on 06-03
    drawn = {
        c["key"]: (c["old"], c["new"])
        for t in section["tables"]
        for c in t["changes"]
        if t["table"] == "kpi_program_daily" and c["column"] == "drawn_to_date"
    }
    assert drawn == {
        f"program_code={SPARK};as_of_date=2020-06-02": ("1200.50", "1500.50"),
        f"program_code={SPARK};as_of_date={D1}": ("1700.50", "2550.50"),
        f"program_code={SPRING};as_of_date={D1}": ("700.00", "790.00"),
    }


def test_the_causes_are_the_nights_deliveries_by_kind(nights):
    p, _, _ = nights
    section = report(p, "n2")["restatements"]
    causes = causes_of(section)
    assert {cid: c["kind"] for cid, c in causes.items()} == {
        f"late_posting:merchants:ds={D2}": "late_posting",  # M9, enrolled 06-02
        f"late_posting:credit_events:ds={D2}": "late_posting",  # E5 and E52, dated 06-03
        f"correction:credit_events:ds={D1}": "correction",  # 06-03 delivered again, E4 changed
        f"correction:employment_reports:ds={D2}": "correction",  # R3 re-reports M2's June
        f"re_delivery:merchants:ds={D1}": "re_delivery",  # landed again, the same file
        f"released:credit_events:ds={D1}:by={D2}": "released",  # M9's E8 and E9
    }
    late = causes[f"late_posting:credit_events:ds={D2}"]
    assert late["delivery_rows"] == 2 and late["reach"] == {SPARK: D1, SPRING: D1}  # E6 is of 06-04 itself
    assert causes[f"late_posting:merchants:ds={D2}"]["reach"] == {SPARK: "2020-06-02"}
    assert causes[f"released:credit_events:ds={D1}:by={D2}"]["delivery_rows"] == 2
    assert causes[f"correction:employment_reports:ds={D2}"]["reach"] == {SPARK: "2020-06-01"}
    assert list(causes[f"correction:credit_events:ds={D1}"]["reach"]) == ["every program"]
    assert causes[f"re_delivery:merchants:ds={D1}"]["cells"] == 0  # the same rows explain nothing

    # each cell's causes: the deliveries whose rows of its program take effect on or before its date
    by_day = {(d["program_code"], d["as_of_date"]): set(d["causes"]) for d in section["dates"]}
    assert by_day[(SPARK, "2020-06-02")] == {
        f"late_posting:merchants:ds={D2}",
        f"correction:credit_events:ds={D1}",
        f"correction:employment_reports:ds={D2}",
        f"released:credit_events:ds={D1}:by={D2}",
    }
    assert by_day[(SPARK, D1)] == by_day[(SPARK, "2020-06-02")] | {f"late_posting:credit_events:ds={D2}"}
    assert by_day[(SPRING, D1)] == {f"late_posting:credit_events:ds={D2}", f"correction:credit_events:ds={D1}"}
    assert (SPRING, "2020-06-02") not in by_day  # M5's late drawdown is of 06-03
    for t in section["tables"]:
        for c in t["changes"]:
            program, day = re.match(r"program_code=([^;]+);as_of_date=([0-9-]+)", c["key"]).groups()
            assert set(c["causes"]) == by_day[(program, day)]
    # totals per kind: cells with at least one cause of the kind, each counted once
    kinds = {k["kind"]: k for k in section["causes"]}
    assert kinds["late_posting"]["cells"] == section["cells"]  # every changed date is after 06-02
    spring_cells = sum(d["cells"] for d in section["dates"] if d["program_code"] == SPRING)
    assert causes[f"correction:employment_reports:ds={D2}"]["cells"] == section["cells"] - spring_cells
    assert "none" not in kinds


def test_the_html_shows_the_restatements_first(nights):
    p, _, _ = nights
    html = (p.reports / "n2" / "report.html").read_text(encoding="utf-8")
    sections = re.findall(r'<section id="([^"]+)"', html)
    assert sections[0] == "restatements", sections
    section = report(p, "n2")["restatements"]
    assert f"Restatements: {section['cells']} previously published cells changed" in html
    assert section["attribution"] in html.replace("&#34;", '"')
    assert html.count('<tr data-cause="') == sum(len(k["deliveries"]) for k in section["causes"])
    assert "NOT published" not in html


def test_the_brief_marks_the_restated_dates(nights):
    _, _, page = nights
    marked = dict(re.findall(r'<div class="restated" id="restated-([^"]+)">(.*?)</div>', page, re.S))
    dates = {code: re.findall(r'data-date="([0-9-]+)"', text) for code, text in marked.items()}
    assert dates == {"SPARK-2020": ["2020-06-02", D1], "SPRING-THUNDER-2020": [D1]}


def test_a_night_that_restates_nothing_has_no_section(nights):
    p, _, _ = nights
    section = report(p, "n3")["restatements"]
    assert section["status"] == "computed" and section["cells"] == 0
    assert history.diff_sets(p.runs / "n2" / "kpi.duckdb", p.runs / "n3" / "kpi.duckdb", before=D3) == []
    assert 'id="restatements"' not in (p.reports / "n3" / "report.html").read_text(encoding="utf-8")
    first = report(p, "n1")["restatements"]
    assert first["status"] == "first publication" and first["cells"] == 0
