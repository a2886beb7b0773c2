"""Incremental nightly builds must give exactly what a full refresh gives.

The small data set of test_warehouse_raw arrives night by night (some nights
bring two days at once), then a backdated re-delivery replaces an old
credit-events partition (drops a limit change, adds a drawdown dated two
months back), a re-delivered merchants partition rewrites a merchant's
earliest version (its whole credit history changes segment), and orphans are
released into an old partition. After every night the incremental warehouse
is compared cell by cell with a full refresh of the same raw layer (all three
published marts), and at the end with the independent Python oracle."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys

import duckdb
import pytest
from helpers.warehouse_raw import (
    RESTATED_TABLES,
    event_row,
    expire_orphans_of,
    merchant_row,
    release_orphans_into,
    small_set,
    write_nights,
    write_partition,
)

from program_reporting.core import settings
from program_reporting.core.settings import REPO_ROOT, Paths
from program_reporting.warehouse import build as build_mod

sys.path.insert(0, str(REPO_ROOT / "tests"))
from helpers.kpi_oracle import compute  # noqa: E402

pytestmark = pytest.mark.timeout(1200)

MARTS = {
    "kpi_program_daily": "program_code, as_of_date",
    "kpi_segment_daily": "program_code, as_of_date, region, business_type, size_class",
    "kpi_target_progress": "program_code, as_of_date, metric",
}


# and the incremental staging of the reports (a stale copy left behind would not
# always show in the marts: the effective report of a month may be another)
STAGED = {"stg_employment_reports": "report_id", "int_employment_reports_effective": "merchant_id, period_month"}


def snapshot(db) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY {order}").fetchall() for t, order in {**MARTS, **STAGED}.items()
        }
    finally:
        con.close()


def full_refresh_of(paths: Paths, work) -> dict[str, list[tuple]]:
    """A fresh home with a copy of the same raw layer, built from scratch."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(paths.raw, work / "raw")
    fresh = Paths(drop=work / "drop", home=work)
    summary = build_mod.build("2020-04-24", "full", full_refresh=True, paths=fresh)
    assert summary["full_refresh"]
    return snapshot(fresh.warehouse_db)


def assert_same(incremental: dict, full: dict, when: str) -> None:
    for table in full:
        a, b = incremental[table], full[table]
        assert len(a) == len(b), f"{when}: {table} has {len(a)} rows incrementally, {len(b)} fully"
        diff = [(x, y) for x, y in zip(a, b) if x != y]
        assert diff == [], f"{when}: {table} differs in {len(diff)} rows, first {diff[:2]}"


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    work = tmp_path_factory.mktemp("incremental")
    paths = Paths(drop=work / "drop", home=work / "home")
    data = small_set()
    log = []

    oracle_diffs = []

    def night(ds: str, change=None):
        if change:
            change()
        summary = build_mod.build(ds, f"night-{ds}-{len(log)}", paths=paths)
        log.append(summary)
        oracle_diffs.extend((len(log), d) for d in against_oracle(paths))
        return summary

    since = "2020-04-15"
    for through in ("2020-04-15", "2020-04-17", "2020-04-19", "2020-04-24"):
        night(through, lambda s=since, t=through: write_nights(paths.raw, data, through=t, since=s))
        since = (dt.date.fromisoformat(through) + dt.timedelta(days=1)).isoformat()
    after_nights = snapshot(paths.warehouse_db)

    # a re-delivery of ds=2020-04-17: the limit change is gone, a drawdown of 2020-02-20 appears;
    # one of ds=2020-04-20's employment reports re-sends A's March report with another headcount
    redelivered = [e for e in data["credit_events"]["2020-04-17"] if e["event_id"] != "e105"]
    redelivered.append(
        event_row("e108", "L1", "A", "drawdown", "2020-02-20T10:00:00+08:00", "700.00", due="2020-03-01")
    )
    resent = data["employment_reports"]["2020-04-20"] + [dict(data["employment_reports"]["2020-04-15"][0], employees=7)]
    night(
        "2020-04-24",
        lambda: (
            write_partition(paths.raw, "credit_events", "2020-04-17", redelivered),
            write_partition(paths.raw, "employment_reports", "2020-04-20", resent),
        ),
    )
    after_backdated = snapshot(paths.warehouse_db)

    # a re-delivery of ds=2020-04-16 moves C's earliest (and only early) version to CN-SH
    moved = [merchant_row("C", "CN-SH", "street_stall", "small", "2020-04-16", "active", "2020-04-16T10:00:00+08:00")]
    night("2020-04-24", lambda: write_partition(paths.raw, "merchants", "2020-04-16", moved))
    after_merchant = snapshot(paths.warehouse_db)

    # orphans of ds=2020-04-20 released on 2020-04-24: a repayment dated 2020-04-19;
    # the held orphans of ds=2020-04-18 expire (quarantined: its rows stay as they were);
    # an orphan report released into ds=2020-04-22 re-sends C's April report (ds 2020-04-16)
    # as B's: C's effective reports must be recomputed too
    orphan = [event_row("e109", "L2", "B", "repayment", "2020-04-19T12:00:00+08:00", "250.00")]
    c_april = [
        dict(r, employees=5, merchant_id="B")
        for r in data["employment_reports"]["2020-04-16"]
        if r["report_id"] == "r4"
    ]
    night(
        "2020-04-24",
        lambda: (
            release_orphans_into(paths.raw, "2020-04-20", "2020-04-24", orphan),
            expire_orphans_of(paths.raw, "2020-04-18", "2020-04-24"),
            release_orphans_into(
                paths.raw, "2020-04-22", "2020-04-24", c_april, source="employment_reports", touches_from="2020-04-01"
            ),
        ),
    )
    final = snapshot(paths.warehouse_db)
    return dict(
        paths=paths,
        work=work,
        log=log,
        after_nights=after_nights,
        after_backdated=after_backdated,
        after_merchant=after_merchant,
        final=final,
        oracle_diffs=oracle_diffs,
    )


def test_restate_from_follows_what_landed(nightly):
    log = nightly["log"]
    assert log[0]["full_refresh"] and not any(s["full_refresh"] for s in log[1:])
    restated = [s["restate_from"] for s in log[1:]]
    # 04-16/17 land: events from 04-16 (UTC date 04-16 minus a day of margin); A's April
    # report does not restate credit figures (merchant figures are rebuilt whole)
    assert restated[0] == "2020-04-15"
    # 04-18/19: the late posting of a 04-16 drawdown (UTC 04-16 - 1)
    assert restated[1] == "2020-04-15"
    # 04-20..24: the drawdown at 16:30 UTC on 04-19 (minus a day)
    assert restated[2] == "2020-04-18"
    # the re-delivered 04-17 partition reaches back to its 2020-02-20 drawdown (UTC date - 1)
    assert restated[3] == "2020-02-19"
    # C's earliest version was rewritten: its line's whole history, from its first event (04-16)
    assert restated[4] == "2020-04-15"  # min(first event 04-16 (UTC date - 1), UTC updated date 04-16 - 1)
    # the released orphan of 2020-04-19 (its release's record says 2020-04-18)
    assert restated[5] == "2020-04-18"
    # staging re-reads the credit partitions from the earliest one whose rows changed, and no
    # older one; the orphans released into 04-20 on the last night are appended (its only
    # change), and 04-18, whose release only quarantined its orphans, is not read at all
    assert [s["reload_from"] for s in log[1:]] == [
        "2020-04-16",
        "2020-04-18",
        "2020-04-20",
        "2020-04-17",
        "2020-04-25",
        "2020-04-25",
    ]
    assert [s["append_from"] for s in log[1:]] == [None] * 5 + ["2020-04-20"]
    # and the employment reports from the earliest partition with new rows; every partition
    # after a re-delivery (a report's older copy, replaced since, may win again)
    assert [s["reports_reload_from"] for s in log[1:]] == [
        "2020-04-16",
        "2020-04-18",
        "2020-04-20",
        build_mod.FULL_HISTORY,
        "2020-04-25",
        "2020-04-25",
    ]
    assert [s["reports_append_from"] for s in log[1:]] == [None] * 5 + ["2020-04-22"]
    # the line states restate line by line, except when the new dates hold a benchmark rate
    # change (LPR of 2020-04-20: every line changes) and after a re-delivery (old rows may be gone)
    by_line = [s["new_rows_since"] for s in log[1:]]
    assert by_line[2] is None and by_line[3] is None and None not in by_line[:2] + by_line[4:]
    assert by_line[4] == build_mod.NOTHING_NEW  # only a merchant changed: no new credit rows


def test_the_plan_reaches_dbt_without_parsing_the_project_again(nightly):
    """dbt decides the night's plan (the model int_build_plan), read when the
    models run: dbt parses the project once, not every night (--vars would)."""
    paths, log = nightly["paths"], nightly["log"]
    text = "".join(f.read_text(errors="replace") for f in (paths.home / "warehouse" / "dbt_logs").glob("dbt.log*"))
    assert text.count("Running with dbt") == len(log) >= 7
    assert text.count("Starting full parse") == 1
    assert "because config vars" not in text
    # the last night's dates are in what dbt ran: staging re-read from reload_from (and
    # appended the orphans released into 04-20) and its tests checked those rows; the
    # line states' tests from restate_from
    target = paths.home / "warehouse" / "dbt_target" / "compiled" / "program_reporting" / "models"
    last = log[-1]
    assert last["reload_from"] != last["restate_from"]
    assert (
        f"_ds >= cast('{last['reload_from']}' as date)"
        in (target / "staging" / "raw" / "stg_credit_events.sql").read_text()
    )

    def tests_of(model: str) -> str:
        return "".join(f.read_text() for f in target.glob(f"**/{model}.yml/**/*.sql"))

    def reread(prefix: str) -> str:
        since = dt.datetime.fromisoformat(last[prefix + "append_since"])  # as dbt writes it: str(datetime)
        return (
            f"(_ds >= cast('{last[prefix + 'append_from']}' as date) and (_ds >= cast('{last[prefix + 'reload_from']}' "
            f"as date) or _landed_at >= cast('{since}' as timestamptz)))) dbt_subquery"
        )

    assert reread("") in tests_of("stg_credit_events")
    assert f"state_date >= cast('{last['restate_from']}' as date)) dbt_subquery" in tests_of("int_credit_line_states")
    # the last night restated line by line: the line states' uniqueness test checks the
    # rows of the lines it rebuilt (int_credit_line_restates), not every line's since restate_from
    assert last["new_rows_since"] not in (None, build_mod.NOTHING_NEW)
    unique = "".join(f.read_text() for f in target.glob("*/int_credit_line_states.yml/unique_combination*.sql"))
    assert (
        f"state_date >= cast('{last['restate_from']}' as date) and credit_line_id in (select credit_line_id from "
    ) in unique
    assert '."int_credit_line_restates")) dbt_subquery' in unique
    # the employment reports likewise: staging's tests check the partitions re-read, those
    # of the effective reports the merchants recomputed (int_employment_report_restates)
    assert last["reports_reload_from"] not in (None, build_mod.FULL_HISTORY)
    assert reread("reports_") in tests_of("stg_employment_reports")
    effective = "".join(f.read_text() for f in target.glob("*/int_employment_reports_effective.yml/*.sql"))
    assert "merchant_id in (select merchant_id from " in effective
    assert '."int_employment_report_restates")) dbt_subquery' in effective
    con = duckdb.connect(str(paths.warehouse_db), read_only=True)
    try:  # dbt decided the plan (int_build_plan); the records the build handed it live only as long as the build
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_build_plan'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM _build_landings").fetchone()[0] == 0
        plan = con.execute(
            "SELECT CAST(restate_from AS VARCHAR), CAST(reload_from AS VARCHAR), new_rows_since FROM int_build_plan"
        ).fetchall()
        assert plan == [(last["restate_from"], last["reload_from"], last["new_rows_since"])]
    finally:
        con.close()


def test_a_night_runs_the_data_tests_and_leaves_the_unit_tests_to_full_builds(nightly):
    """Unit tests check the SQL on static inputs: the first (full) build and
    make test run them, the nights do not; every night runs its data tests."""
    paths = nightly["paths"]
    results = json.loads((paths.home / "warehouse" / "dbt_target" / "run_results.json").read_text())["results"]
    kinds = {r["unique_id"].split(".")[0] for r in results}
    assert "unit_test" not in kinds and {"model", "test"} <= kinds
    assert {r["status"] for r in results} <= {"success", "pass", "warn"}
    text = "".join(f.read_text(errors="replace") for f in (paths.home / "warehouse" / "dbt_logs").glob("dbt.log*"))
    assert "START unit_test" in text  # the first build of the fixture (a full one) ran them


@pytest.fixture(scope="module")
def plan_rules(tmp_path_factory) -> dict[str, str]:
    """dbt's restatement rules on hand-made reconciliation records: the unit tests of
    int_build_plan and int_build_deliveries (their YAML), each on its own, in a warehouse
    that holds the models (empty: unit tests read only column types). Unit test name -> status."""
    work = tmp_path_factory.mktemp("plan-rules")
    paths = Paths(drop=work / "drop", home=work / "home")
    paths.raw.mkdir(parents=True)
    paths.warehouse_db.parent.mkdir(parents=True)
    parents = build_mod._invoke(
        build_mod._dbt_args(
            [
                "build",
                "--select",
                "int_build_plan",
                "int_build_deliveries",
                "--exclude-resource-type",
                "unit_test",
                "--exclude-resource-type",
                "test",
                "--empty",
            ],
            paths,
        ),
        paths,
    )
    assert parents.success, [n for n in build_mod._node_results(parents) if n[1] not in ("success", "pass")]
    result = build_mod._invoke(
        build_mod._dbt_args(
            ["test", "--select", "int_build_plan,test_type:unit", "int_build_deliveries,test_type:unit"], paths
        ),
        paths,
    )
    return {
        name.rsplit(".", 1)[-1]: status
        for name, status, _ in build_mod._node_results(result)
        if name.startswith("unit_test.")
    }


def assert_rules_pass(plan_rules: dict[str, str], names: list[str]) -> None:
    assert {name: plan_rules.get(name, "missing") for name in names} == dict.fromkeys(names, "pass")


def test_line_by_line_only_when_exact(plan_rules):
    """new_rows_since: the earliest landing the last build has not seen, or None
    (restate every line) when rows may have gone or every line changes: from a new
    partition; orphans released into a partition seen before count from their release;
    nothing new; a partition seen before delivered again, or gone; the LPR change of
    2020-04-20 in the new dates (dbt_project/models/intermediate/int_build_plan.yml)."""
    assert_rules_pass(
        plan_rules,
        [
            "line_by_line_from_a_new_partition",
            "line_by_line_from_released_orphans",
            "line_by_line_when_nothing_is_new",
            "every_line_after_a_redelivery",
            "every_line_when_a_partition_is_gone",
            "every_line_when_a_benchmark_rate_changes",
        ],
    )


def test_reports_are_re_read_from_their_earliest_new_rows(plan_rules):
    """reports_reload_from: the earliest employment partition with new rows (or the
    first new ds: not one whose orphans only expired); every partition when one seen
    before was delivered again or is gone (int_build_plan.yml)."""
    assert_rules_pass(
        plan_rules,
        [
            "reports_reread_from_a_new_partition",
            "reports_reread_from_released_orphans",
            "reports_not_reread_for_expired_orphans",
            "reports_reread_whole_after_a_redelivery",
            "reports_reread_whole_when_a_partition_is_gone",
        ],
    )


def test_releases_into_old_partitions_are_appended(plan_rules):
    """append_from, append_since: a partition the last build saw whose only change is
    new releases of rows at instants, before those re-read, is appended, not re-read;
    not one at or after the first re-read, nor a release without an instant, nor any
    report after a re-delivery of reports (int_build_plan.yml)."""
    assert_rules_pass(
        plan_rules,
        [
            "releases_into_old_partitions_are_appended",
            "a_partition_re_read_takes_its_new_releases_along",
            "no_report_is_appended_after_a_redelivery",
        ],
    )


def test_a_release_restates_its_own_reach_not_its_partitions(plan_rules):
    """Orphans released into an old partition restate from the released rows'
    dates; the partition's original delivery (up to 30 days back) was built
    already. A build that never saw this landing takes the partition's reach; a
    release recorded before releases carried their reach, the partition's; a record
    without a reach although rows landed, every date (int_build_deliveries.yml)."""
    assert_rules_pass(plan_rules, ["a_release_restates_its_own_reach_not_its_partitions"])


def test_backdated_redelivery_changes_the_past(nightly):
    before = {r[1]: r for r in nightly["after_nights"]["kpi_program_daily"]}
    after = {r[1]: r for r in nightly["after_backdated"]["kpi_program_daily"]}
    day = dt.date(2020, 2, 25)
    drawn = 9  # column index of drawn_to_date (program_code, as_of_date, 5 counts, limit, avg, drawn)
    assert before[day][drawn] == 0 and after[day][drawn] == 700


def test_incremental_equals_full_refresh(nightly, tmp_path):
    full = full_refresh_of(nightly["paths"], tmp_path / "full")
    assert_same(nightly["final"], full, "after all nights")
    assert len(full["kpi_program_daily"]) == 106 and len(full["kpi_segment_daily"]) > 100
    # and the changes did change something
    assert nightly["final"] != nightly["after_merchant"] != nightly["after_backdated"] != nightly["after_nights"]


def test_a_full_build_in_passes_over_the_lines_equals_one_pass(nightly, tmp_path, monkeypatch):
    """At scale a full build computes the credit-line states in passes over
    disjoint sets of lines (macro line_passes), to bound its spill; here a
    pass per 5 events makes several."""
    one = tmp_path / "one"
    full_refresh_of(nightly["paths"], one)
    monkeypatch.setenv("PROGRAM_REPORTING_LINE_PASS_EVENTS", "5")
    shutil.copytree(nightly["paths"].raw, tmp_path / "passes" / "raw")
    fresh = Paths(drop=tmp_path / "passes" / "drop", home=tmp_path / "passes")
    summary = build_mod.build("2020-04-24", "full-in-passes", full_refresh=True, paths=fresh)
    assert summary["line_passes"] >= 3
    assert snapshot(fresh.warehouse_db) == nightly["final"]
    states = "SELECT * FROM int_credit_line_states ORDER BY credit_line_id, state_date"
    rows = {}
    for name, db in (("one", one / "warehouse" / "warehouse.duckdb"), ("passes", fresh.warehouse_db)):
        con = duckdb.connect(str(db), read_only=True)
        rows[name] = con.execute(states).fetchall()
        if name == "passes":  # the lines did fall in different passes (macro line_pass_filter)
            used = con.execute(
                f"SELECT count(DISTINCT hash(credit_line_id) % {summary['line_passes']}) FROM int_credit_line_states"
            ).fetchone()[0]
        con.close()
    assert used >= 2
    assert len(rows["one"]) > 10 and rows["passes"] == rows["one"]


def test_passes_follow_the_stored_events_and_the_memory_limit(monkeypatch, plan_rules):
    """One pass per 10M stored credit events per GB of DuckDB memory unless set; a full
    build on 41M credit events (merchants do not count) makes 2 passes at 40M a pass,
    5 at 10M (unit tests of int_build_plan)."""
    assert settings.memory_limit_bytes("4GB") == 4 * 10**9
    assert settings.memory_limit_bytes("512MiB") == 512 * 2**20
    with pytest.raises(ValueError, match="expected e.g. 4GB"):
        settings.memory_limit_bytes("lots")
    monkeypatch.delenv("PROGRAM_REPORTING_LINE_PASS_EVENTS", raising=False)
    monkeypatch.setenv("PROGRAM_REPORTING_DUCKDB_MEMORY_LIMIT", "4GB")
    assert settings.line_pass_events() == 40_000_000
    monkeypatch.setenv("PROGRAM_REPORTING_LINE_PASS_EVENTS", "10000000")
    assert settings.line_pass_events() == 10_000_000
    assert_rules_pass(plan_rules, ["passes_follow_the_stored_events", "passes_follow_the_budget"])


def test_every_night_equals_the_python_oracle(nightly):
    assert len(nightly["log"]) == 7
    assert nightly["oracle_diffs"] == []


def against_oracle(paths: Paths) -> list[tuple]:
    """Cell-by-cell differences between the marts and kpi_oracle on the current raw layer."""
    expected_program, expected_segments = compute(paths.home)
    con = duckdb.connect(str(paths.warehouse_db), read_only=True)
    try:
        rel = con.execute("SELECT * FROM kpi_program_daily ORDER BY program_code, as_of_date")
        cols = [c[0] for c in rel.description]
        got = [dict(zip(cols, r)) for r in rel.fetchall()]
        rel = con.execute("SELECT * FROM kpi_segment_daily")
        scols = [c[0] for c in rel.description]
        segs = [dict(zip(scols, r)) for r in rel.fetchall()]
    finally:
        con.close()
    # kpi_oracle ends its dates at the latest _ds that has rows; kpis.md's latest ds
    # loaded also counts a delivery without rows (the marts do): compare the common dates
    last = max(r["as_of_date"] for r in expected_program)
    got = [r for r in got if r["as_of_date"] <= last]
    segs = [r for r in segs if r["as_of_date"] <= last]
    diffs = []
    if len(got) != len(expected_program):
        diffs.append(("program rows", len(got), len(expected_program)))
    diffs += [(g["as_of_date"], c, g[c], e[c]) for g, e in zip(got, expected_program) for c in g if g[c] != e[c]]
    key = ("program_code", "as_of_date", "region", "business_type", "size_class")
    exp = sorted(expected_segments, key=lambda r: tuple(r[k] for k in key))
    segs.sort(key=lambda r: tuple(r[k] for k in key))
    if len(segs) != len(exp):
        diffs.append(("segment rows", len(segs), len(exp)))
    diffs += [(g["as_of_date"], g["region"], c, g[c], e[c]) for g, e in zip(segs, exp) for c in g if g[c] != e[c]]
    return diffs


# --------------------------------------------------------------------------
# Releases into old partitions are appended, not re-read (issue 23, item 7): after
# a history delivered as one file (one partition dated on its last day), the
# night's released orphans must not make staging re-read the whole history.

ONE_FILE_DS = "2020-04-24"
EVERY_TABLE = RESTATED_TABLES


def every_row(db) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table in EVERY_TABLE:
            out[table] = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        return out
    finally:
        con.close()


def one_file_history(raw) -> None:
    """small_set's deliveries as one partition per source, dated on its last day. Its
    records start at line 10: lines 2-9 of the file are rows that were held (orphans)."""
    data = small_set()
    for source, by_ds in data.items():
        rows = [row for ds in sorted(by_ds) for row in by_ds[ds]]
        write_partition(raw, source, ONE_FILE_DS, rows, first_line=10)


def report(rid, mid, month, employees, at):
    return dict(
        report_id=rid,
        merchant_id=mid,
        period_month=month,
        employees=employees,
        baseline_employees=10,
        reported_at=at,
        verification_status="self_reported",
    )


@pytest.fixture(scope="module")
def appended(tmp_path_factory):
    """Night 1 builds the one-file history; night 2 lands 04-25 and 04-26 (late postings,
    a report, a re-sent March report of A); night 3 lands an empty 04-27 and releases
    orphans into 04-24 and 04-25, copies of events and reports stored before:

    - credit events (the first copy by (ds, line) is kept): into 04-24 at lines 4-6, a
      copy of e105 (stored from 04-24 at a later line) and of e110 (stored from 04-25),
      both must replace the stored copy, and a new event e112; into 04-25, after its
      rows, a copy of e101 (stored from 04-24: it stays) and of e111 (stored from 04-26:
      replaced);
    - employment reports (the copy from the latest (ds, line) wins): into 04-24 at line
      4, a copy of r2 (stored from 04-24 at a later line: it stays); into 04-25, a copy
      of r1 (in 04-24, earlier, and stored from 04-26, later: it stays), of r3 (stored
      from 04-24: replaced) and of C's r4 as B's (replaced: C's effective reports change).

    After each night: every table against a full refresh of the same raw layer."""
    work = tmp_path_factory.mktemp("appended")
    paths = Paths(drop=work / "drop", home=work / "home")
    small = small_set()
    e = {r["event_id"]: r for rows in small["credit_events"].values() for r in rows}
    r = {x["report_id"]: x for rows in small["employment_reports"].values() for x in rows}
    log, diffs = [], []

    def night(ds: str) -> dict:
        summary = build_mod.build(ds, f"night-{ds}", paths=paths)
        log.append(summary)
        work_full = work / f"full-{len(log)}"
        shutil.copytree(paths.raw, work_full / "raw")
        full = Paths(drop=work_full / "drop", home=work_full)
        assert build_mod.build(ds, "full", full_refresh=True, paths=full)["full_refresh"]
        mine, theirs = every_row(paths.warehouse_db), every_row(full.warehouse_db)
        diffs.extend(
            (ds, table, [row for row in mine[table] if row not in theirs[table]][:2])
            for table in EVERY_TABLE
            if mine[table] != theirs[table]
        )
        return summary

    one_file_history(paths.raw)
    night(ONE_FILE_DS)

    e110 = event_row("e110", "L2", "B", "repayment", "2020-04-23T12:00:00+08:00", "100.00")
    e111 = event_row("e111", "L1", "A", "repayment", "2020-04-25T12:00:00+08:00", "50.00")
    write_partition(paths.raw, "credit_events", "2020-04-25", [e110])
    write_partition(paths.raw, "credit_events", "2020-04-26", [e111])
    write_partition(
        paths.raw, "employment_reports", "2020-04-25", [report("r5", "B", "2020-04-01", 4, "2020-04-25T10:00:00+08:00")]
    )
    write_partition(paths.raw, "employment_reports", "2020-04-26", [dict(r["r1"], employees=6)])
    for ds in ("2020-04-25", "2020-04-26"):
        write_partition(paths.raw, "merchants", ds, [])
    night("2020-04-26")

    for source in ("merchants", "credit_events", "employment_reports"):
        write_partition(paths.raw, source, "2020-04-27", [])
    e112 = event_row("e112", "L3", "C", "repayment", "2020-04-22T12:00:00+08:00", "100.00")
    # their reach as landing records it: the released events' earliest UTC date, less a day
    release_orphans_into(
        paths.raw, ONE_FILE_DS, "2020-04-27", [e["e105"], e110, e112], touches_from="2020-04-16", first_line=4
    )
    release_orphans_into(paths.raw, "2020-04-25", "2020-04-27", [e["e101"], e111], touches_from="2020-02-29")
    release_orphans_into(
        paths.raw,
        ONE_FILE_DS,
        "2020-04-27",
        [dict(r["r2"], employees=11)],
        source="employment_reports",
        touches_from="2020-04-01",
        first_line=4,
    )
    release_orphans_into(
        paths.raw,
        "2020-04-25",
        "2020-04-27",
        [dict(r["r1"], employees=5), dict(r["r3"], employees=13), dict(r["r4"], employees=5, merchant_id="B")],
        source="employment_reports",
        touches_from="2020-03-01",
    )
    night("2020-04-27")
    con = duckdb.connect(str(paths.warehouse_db), read_only=True)
    try:
        plan = con.execute(
            "SELECT CAST(reload_from AS VARCHAR), CAST(append_from AS VARCHAR), append_since, "
            "CAST(reports_reload_from AS VARCHAR), CAST(reports_append_from AS VARCHAR), reports_append_since "
            "FROM int_build_plan"
        ).fetchone()
        staged = {
            table: dict(
                (row[0], row[1:])
                for row in con.execute(f"SELECT {key}, _ds, _line, _landed_at FROM {table} ORDER BY 1").fetchall()
            )
            for table, key in (("stg_credit_events", "event_id"), ("stg_employment_reports", "report_id"))
        }
        reports = dict(con.execute("SELECT report_id, employees FROM stg_employment_reports").fetchall())
    finally:
        con.close()
    compiled = paths.home / "warehouse" / "dbt_target" / "compiled" / "program_reporting"
    return dict(
        paths=paths,
        log=log,
        diffs=diffs,
        plan=plan,
        staged=staged,
        reports=reports,
        releases={
            source: {
                ds: json.loads((paths.raw / source / f"ds={ds}" / "_reconciliation.json").read_text())["releases"][-1][
                    "at"
                ]
                for ds in (ONE_FILE_DS, "2020-04-25")
            }
            for source in ("credit_events", "employment_reports")
        },
        staging_sql=(compiled / "models" / "staging" / "raw" / "stg_credit_events.sql").read_text(),
        reports_sql=(compiled / "models" / "staging" / "raw" / "stg_employment_reports.sql").read_text(),
        tests_sql={
            model: "".join(f.read_text() for f in compiled.glob(f"models/**/{model}.yml/**/*.sql"))
            for model in ("stg_credit_events", "stg_employment_reports")
        },
    )


def test_released_rows_are_appended_and_every_night_equals_a_full_refresh(appended):
    assert appended["diffs"] == []
    log = appended["log"]
    assert log[0]["full_refresh"] and not any(s["full_refresh"] for s in log[1:])


def test_a_night_that_only_releases_into_old_partitions_re_reads_only_its_own(appended):
    """The plan re-reads from the night's new ds (not the old partitions the orphans
    joined) and appends the rows released since the earliest of the night's releases."""
    reload_from, append_from, append_since, reports_reload_from, reports_append_from, reports_append_since = appended[
        "plan"
    ]
    assert (reload_from, append_from) == ("2020-04-27", ONE_FILE_DS)
    assert (reports_reload_from, reports_append_from) == ("2020-04-27", ONE_FILE_DS)
    releases = appended["releases"]
    assert append_since == min(dt.datetime.fromisoformat(at) for at in releases["credit_events"].values())
    assert reports_append_since == min(dt.datetime.fromisoformat(at) for at in releases["employment_reports"].values())
    last = appended["log"][-1]
    assert last["reload_from"] == last["reports_reload_from"] == "2020-04-27"
    assert last["append_from"] == last["reports_append_from"] == ONE_FILE_DS
    assert last["append_since"] == append_since.isoformat()
    # the night before (new partitions only) appended nothing
    assert appended["log"][1]["append_from"] is None and appended["log"][1]["reports_append_from"] is None
    # staging read the old partitions' rows landed since then, apart (each scan keeps its bounds)
    since = f"_landed_at >= cast('{append_since}' as timestamptz)"
    assert "union all" in appended["staging_sql"] and since in appended["staging_sql"]
    assert "union all" in appended["reports_sql"]
    # and the same data tests checked the appended rows as the re-read ones
    assert (
        f"(_ds >= cast('{ONE_FILE_DS}' as date) and (_ds >= cast('2020-04-27' as date) or {since}))"
        in (appended["tests_sql"]["stg_credit_events"])
    )
    assert "_landed_at >= cast(" in appended["tests_sql"]["stg_employment_reports"]


def test_appended_copies_keep_the_duplicate_rules(appended):
    events, reports = appended["staged"]["stg_credit_events"], appended["staged"]["stg_employment_reports"]
    at = {s: {ds: dt.datetime.fromisoformat(a) for ds, a in v.items()} for s, v in appended["releases"].items()}
    one_file, later = dt.date.fromisoformat(ONE_FILE_DS), dt.date(2020, 4, 25)
    # credit events: the first copy by (ds, line)
    assert events["e105"] == (one_file, 4, at["credit_events"][ONE_FILE_DS])  # before its line in the file
    assert events["e110"] == (one_file, 5, at["credit_events"][ONE_FILE_DS])  # before its copy of 04-25
    assert events["e112"][:2] == (one_file, 6)
    assert events["e101"][:2] == (one_file, 10)  # the copy released into 04-25 comes after it
    assert events["e111"][:2] == (later, 4)  # before its copy of 04-26 (released after e101, line 3)
    # employment reports: the copy from the latest (ds, line)
    assert reports["r2"][0] == one_file and reports["r2"][1] > 4 and appended["reports"]["r2"] == 9
    assert reports["r1"][0] == dt.date(2020, 4, 26) and appended["reports"]["r1"] == 6
    assert reports["r3"][0] == later and appended["reports"]["r3"] == 13
    assert reports["r4"][0] == later and appended["reports"]["r4"] == 5


def test_appended_rows_are_tested_as_re_read_ones(appended):
    """A night whose only report is released into the one-file partition, without a
    headcount: staging's not_null test finds it among the appended rows. (The module's
    last test: the warehouse keeps the failed night.)"""
    paths = appended["paths"]
    for source in ("merchants", "credit_events", "employment_reports"):
        write_partition(paths.raw, source, "2020-04-28", [])
    release_orphans_into(
        paths.raw,
        ONE_FILE_DS,
        "2020-04-28",
        [report("r6", "B", "2020-04-01", None, "2020-04-24T10:00:00+08:00")],
        source="employment_reports",
        touches_from="2020-04-01",
    )
    with pytest.raises(build_mod.BuildFailed) as failed:
        build_mod.build("2020-04-28", "night-2020-04-28", paths=paths)
    assert any(".not_null_stg_employment_reports_employees" in node for node in failed.value.nodes), failed.value
