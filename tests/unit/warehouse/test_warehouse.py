"""The dbt warehouse on a small hand-made raw layer (test_warehouse_raw.small_set):
every column of kpi_program_daily on chosen dates against values worked out
by hand from kpis.md, the segment split, the audit set, and the dbt tests
(data and unit) that `dbt build` ran. One real build (dbt + DuckDB) per module."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

import duckdb
import pytest
from helpers.warehouse_raw import LAST_DS, small_set, write_nights

from program_reporting.core.settings import Paths
from program_reporting.warehouse import build as build_mod

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.mktemp("warehouse_home")
    paths = Paths(drop=home / "drop", home=home)
    write_nights(paths.raw, small_set(), through=LAST_DS)
    summary = build_mod.build(LAST_DS, "run-small", paths=paths)
    return paths, summary


def rows(paths: Paths, sql: str, params=None) -> list[dict]:
    con = duckdb.connect(str(paths.warehouse_db), read_only=True)
    try:
        rel = con.execute(sql, params or [])
        cols = [c[0] for c in rel.description]
        return [dict(zip(cols, r)) for r in rel.fetchall()]
    finally:
        con.close()


def program_day(paths: Paths, day: str) -> dict:
    got = rows(paths, "SELECT * FROM kpi_program_daily WHERE as_of_date = ?", [day])
    assert len(got) == 1, got
    return got[0]


# Lines: L1 (A, rate 0): opened 03-01 limit 10,000; 2,000 drawn 03-10 due 03-20 (never repaid
# in time: 30 days past due on 04-19); 500 repaid 04-16; 1,000 drawn 04-16 (posted late, on
# 04-19); limit 12,000 from 04-17; 300 drawn at 00:30 local on 04-20; 200 written off 04-22.
# L2 (B, rate 1%): opened 03-05 limit 5,000; 1,000 drawn 04-15; closed 04-23.
# L3 (C, rate 0): opened 04-16 limit 3,000; 800 drawn 04-17 (delivered twice); repaid 04-21.
# Benchmark (CNY LPR): 4.05% to 04-19, 3.85% from 04-20.
EXPECTED = {
    "2020-03-15": dict(
        enrolled_merchants=2,  # A (pilot, enrolled 01-10) and B (01-15): earliest versions in force
        active_merchants=1,  # A
        exited_merchants=1,  # B's only version says exited
        open_credit_lines=2,  # L1, L2
        merchants_with_credit=2,
        credit_limit_total=D("15000.00"),  # 10,000 + 5,000
        avg_limit_per_merchant=D("7500.00"),
        drawn_to_date=D("2000.00"),
        goods_purchased_on_day=D("0.00"),
        repaid_to_date=D("0.00"),
        written_off_to_date=D("0.00"),
        outstanding_balance=D("2000.00"),
        utilization_rate=D("0.133333"),  # 2,000 / 15,000
        par30_balance=D("0.00"),  # 03-10 drawdown due 03-20: not yet due
        par30_rate=D("0.000000"),
        par90_rate=D("0.000000"),
        default_rate=D("0.000000"),
        interest_subsidy_cost_to_date=D("1.33"),  # 6 days (03-10..03-15) x 2,000 x 4.05% / 365 = 1.3315
        reporting_merchants=1,  # A's March report (8 of 10)
        reporting_coverage=D("0.500000"),
        jobs_baseline=10,
        jobs_current=8,
        jobs_retained=8,
        jobs_added=0,
        jobs_retention_rate=D("0.800000"),
        survival_cohort_90d=0,  # nobody enrolled 90 days before 03-15
        survival_rate_90d=None,
    ),
    "2020-04-15": dict(
        enrolled_merchants=2,
        active_merchants=1,
        exited_merchants=1,
        open_credit_lines=2,
        merchants_with_credit=2,
        credit_limit_total=D("15000.00"),
        avg_limit_per_merchant=D("7500.00"),
        drawn_to_date=D("3000.00"),  # 2,000 + L2's 1,000 today
        goods_purchased_on_day=D("1000.00"),
        repaid_to_date=D("0.00"),
        written_off_to_date=D("0.00"),
        outstanding_balance=D("3000.00"),
        utilization_rate=D("0.200000"),
        par30_balance=D("0.00"),  # 26 days past due
        par30_rate=D("0.000000"),
        par90_rate=D("0.000000"),
        default_rate=D("0.000000"),
        # one segment (CN-GD): L1 37 days (03-10..04-15) x 2,000 x 4.05% = 2,997, L2 1 day x 1,000 x
        # (4.05% - 1%) = 30.5; (2,997 + 30.5) / 365 = 8.2945
        interest_subsidy_cost_to_date=D("8.29"),
        reporting_merchants=1,
        reporting_coverage=D("0.500000"),
        # A's April report as corrected later (12 of 10): corrections count on every April date
        jobs_baseline=10,
        jobs_current=12,
        jobs_retained=10,
        jobs_added=2,
        jobs_retention_rate=D("1.000000"),
        # A (day 90 = 04-09, active then) and B (day 90 = 04-14; its earliest version, exited)
        survival_cohort_90d=2,
        survival_rate_90d=D("0.500000"),
    ),
    "2020-04-19": dict(
        enrolled_merchants=3,
        active_merchants=2,
        exited_merchants=1,  # C enrolled 04-16
        open_credit_lines=3,
        merchants_with_credit=3,
        credit_limit_total=D("20000.00"),  # 12,000 + 5,000 + 3,000
        avg_limit_per_merchant=D("6666.67"),
        drawn_to_date=D("4800.00"),  # 3,000 + 1,000 (L1, 04-16, posted late) + 800 (L3, once)
        goods_purchased_on_day=D("0.00"),
        repaid_to_date=D("500.00"),
        written_off_to_date=D("0.00"),
        outstanding_balance=D("4300.00"),  # L1 2,500 + L2 1,000 + L3 800
        utilization_rate=D("0.215000"),
        # 500 repaid goes to the 03-20 drawdown first: 1,500 of it unpaid, 30 days past due on 04-19
        par30_balance=D("2500.00"),
        par30_rate=D("0.581395"),  # 2,500 / 4,300 = 0.5813953
        par90_rate=D("0.000000"),
        default_rate=D("0.000000"),
        # segments: CN-ZJ (A moved at 00:30 local on 04-18): L1 2,997 + 4 x 2,500 x 4.05% = 3,402 -> 9.3205;
        # CN-GD: L2 5 x 1,000 x 3.05% = 152.5 -> 0.4178; CN-BJ: L3 3 x 800 x 4.05% = 97.2 -> 0.2663
        interest_subsidy_cost_to_date=D("10.01"),  # 9.32 + 0.42 + 0.27
        reporting_merchants=2,
        reporting_coverage=D("0.666667"),
        jobs_baseline=13,
        jobs_current=15,
        jobs_retained=13,
        jobs_added=2,
        jobs_retention_rate=D("1.000000"),
        survival_cohort_90d=2,
        survival_rate_90d=D("0.500000"),
    ),
    "2020-04-20": dict(
        enrolled_merchants=3,
        active_merchants=2,
        exited_merchants=1,
        open_credit_lines=3,
        merchants_with_credit=3,
        credit_limit_total=D("20000.00"),
        avg_limit_per_merchant=D("6666.67"),
        drawn_to_date=D("5100.00"),  # + 300 drawn at 00:30 local (16:30 UTC on 04-19)
        goods_purchased_on_day=D("300.00"),
        repaid_to_date=D("500.00"),
        written_off_to_date=D("0.00"),
        outstanding_balance=D("4600.00"),
        utilization_rate=D("0.230000"),
        par30_balance=D("2800.00"),
        par30_rate=D("0.608696"),  # 2,800 / 4,600 = 0.6086957
        par90_rate=D("0.000000"),
        default_rate=D("0.000000"),
        # LPR 3.85% from today: ZJ 3,402 + 2,800 x 3.85% = 3,509.8 -> 9.6159; GD 152.5 + 1,000 x 2.85%
        # = 181 -> 0.4959; BJ 97.2 + 800 x 3.85% = 128 -> 0.3507
        interest_subsidy_cost_to_date=D("10.47"),  # 9.62 + 0.50 + 0.35
        reporting_merchants=2,
        reporting_coverage=D("0.666667"),
        jobs_baseline=13,
        jobs_current=15,
        jobs_retained=13,
        jobs_added=2,
        jobs_retention_rate=D("1.000000"),
        survival_cohort_90d=2,
        survival_rate_90d=D("0.500000"),
    ),
    "2020-04-24": dict(
        enrolled_merchants=3,
        active_merchants=1,
        exited_merchants=2,  # C exited on 04-22
        open_credit_lines=2,
        merchants_with_credit=2,  # L2 closed 04-23; C's line stays open
        credit_limit_total=D("15000.00"),
        avg_limit_per_merchant=D("7500.00"),
        drawn_to_date=D("5100.00"),
        goods_purchased_on_day=D("0.00"),
        repaid_to_date=D("1300.00"),  # 500 + 800
        written_off_to_date=D("200.00"),
        outstanding_balance=D("3600.00"),  # L1 2,600 + L2 1,000 (closed, still owed) + L3 0
        utilization_rate=D("0.240000"),  # 3,600 / 15,000
        par30_balance=D("2600.00"),
        par30_rate=D("0.722222"),  # 2,600 / 3,600
        par90_rate=D("0.000000"),
        default_rate=D("0.039216"),  # 200 / 5,100 = 0.0392157
        # ZJ 3,509.8 + 107.8 (04-21) + 3 x 2,600 x 3.85% = 3,917.9 -> 10.7340; GD 181 + 4 x 28.5 = 295
        # -> 0.8082; BJ 128 (repaid 04-21) -> 0.3507
        interest_subsidy_cost_to_date=D("11.89"),  # 10.73 + 0.81 + 0.35
        reporting_merchants=2,
        reporting_coverage=D("0.666667"),
        jobs_baseline=13,
        jobs_current=15,
        jobs_retained=13,
        jobs_added=2,
        jobs_retention_rate=D("1.000000"),
        survival_cohort_90d=2,
        survival_rate_90d=D("0.500000"),
    ),
}


@pytest.mark.parametrize("day", sorted(EXPECTED))
def test_program_daily_every_column(built, day):
    paths, _ = built
    got = program_day(paths, day)
    expected = {"program_code": "SPARK-2020", "as_of_date": dt.date.fromisoformat(day), **EXPECTED[day]}
    assert list(got) == list(expected), "columns or their order differ from kpis.md"
    diffs = {c: (got[c], expected[c]) for c in expected if got[c] != expected[c]}
    assert diffs == {}


def test_one_row_per_date_from_first_enrolment_to_latest_ds(built):
    paths, summary = built
    got = rows(
        paths,
        "SELECT min(as_of_date) AS lo, max(as_of_date) AS hi, count(*) AS n, "
        "count(DISTINCT as_of_date) AS d FROM kpi_program_daily",
    )[0]
    assert (got["lo"], got["hi"]) == (dt.date(2020, 1, 10), dt.date(2020, 4, 24))
    assert got["n"] == got["d"] == 106
    assert summary["loaded_through"] == LAST_DS and summary["full_refresh"] is True


def test_region_move_carries_the_whole_history(built):
    paths, _ = built
    seg = rows(
        paths,
        "SELECT as_of_date, region, drawn_to_date, outstanding_balance, par30_balance, "
        "enrolled_merchants, interest_subsidy_cost_to_date FROM kpi_segment_daily "
        "WHERE as_of_date IN ('2020-04-17', '2020-04-18') ORDER BY as_of_date, region",
    )
    by = {(r["as_of_date"].isoformat(), r["region"]): r for r in seg}
    # 04-17: A and L1 still in CN-GD with B; 04-18 (A's move at 00:30 local): all of L1 in CN-ZJ
    assert by[("2020-04-17", "CN-GD")]["drawn_to_date"] == D("4000.00")  # L1 3,000 + L2 1,000
    assert ("2020-04-17", "CN-ZJ") not in by
    assert by[("2020-04-18", "CN-ZJ")]["drawn_to_date"] == D("3000.00")
    assert by[("2020-04-18", "CN-ZJ")]["enrolled_merchants"] == 1
    assert by[("2020-04-18", "CN-GD")]["drawn_to_date"] == D("1000.00")
    # 3,402 - 1 day... : L1 to 04-18 = 2,997 + 3 x 2,500 x 4.05% = 3,300.75 -> 9.0432
    assert by[("2020-04-18", "CN-ZJ")]["interest_subsidy_cost_to_date"] == D("9.04")


def test_segments_sum_exactly_to_program(built):
    paths, _ = built
    additive = [
        "enrolled_merchants",
        "active_merchants",
        "exited_merchants",
        "open_credit_lines",
        "merchants_with_credit",
        "credit_limit_total",
        "drawn_to_date",
        "goods_purchased_on_day",
        "repaid_to_date",
        "written_off_to_date",
        "outstanding_balance",
        "par30_balance",
        "interest_subsidy_cost_to_date",
        "reporting_merchants",
        "jobs_baseline",
        "jobs_current",
        "jobs_retained",
        "jobs_added",
    ]
    sums = ", ".join(f"coalesce(sum(s.{c}), 0) AS {c}" for c in additive)
    diff = " OR ".join(f"p.{c} <> coalesce(s.{c}, 0)" for c in additive)
    bad = rows(
        paths,
        f"""
        WITH s AS (SELECT program_code, as_of_date, {sums} FROM kpi_segment_daily s GROUP BY 1, 2)
        SELECT p.as_of_date FROM kpi_program_daily p LEFT JOIN s USING (program_code, as_of_date)
        WHERE {diff}""",
    )
    assert bad == []


def test_published_types_have_no_float(built):
    paths, _ = built
    types = rows(
        paths, "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_name LIKE 'kpi_%'"
    )
    assert types and all(
        t["data_type"] in ("VARCHAR", "DATE", "BIGINT", "DECIMAL(18,2)", "DECIMAL(12,6)") for t in types
    ), types


def test_target_progress(built):
    paths, _ = built
    got = rows(paths, "SELECT * FROM kpi_target_progress WHERE as_of_date = '2020-04-19' ORDER BY metric")
    assert [r["metric"] for r in got] == ["avg_limit_per_merchant", "drawn_to_date", "jobs_retained"]
    avg = got[0]
    assert (avg["actual_value"], avg["target_value"], avg["progress_rate"]) == (
        D("6666.67"),
        D("100000.00"),
        D("0.066667"),
    )  # 6,666.67 / 100,000


def test_dbt_build_ran_data_and_unit_tests(built):
    paths, summary = built
    results = json.loads((paths.home / "warehouse" / "dbt_target" / "run_results.json").read_text())["results"]
    by_kind: dict[str, list[str]] = {}
    for r in results:
        kind = r["unique_id"].split(".")[0]
        by_kind.setdefault(kind, []).append(r["status"])
    assert len(by_kind["unit_test"]) >= 7 and set(by_kind["unit_test"]) == {"pass"}
    assert len(by_kind["test"]) > 100 and set(by_kind["test"]) <= {"pass", "warn"}
    names = {r["unique_id"] for r in results}
    for singular in ("rates_within_bounds", "partial_load_guard"):
        assert any(singular in n for n in names), singular
    assert set(by_kind["model"]) == {"success"} and summary["nodes"] == len(results)


def test_stage_audit_copies_the_marts_with_run_info(built):
    paths, _ = built
    target = build_mod.stage_audit("run-small", LAST_DS, paths=paths)
    assert target == paths.audit / "run-small" / "kpi.duckdb"
    assert not target.with_name("kpi.duckdb.wal").exists()
    con = duckdb.connect(str(target), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert tables == {"kpi_program_daily", "kpi_segment_daily", "kpi_target_progress", "run_info"}
        assert con.execute("SELECT run_id, ds FROM run_info").fetchall() == [("run-small", dt.date(2020, 4, 24))]
        n = con.execute("SELECT count(*) FROM kpi_program_daily").fetchone()[0]
    finally:
        con.close()
    assert n == 106


def test_nothing_landed_is_a_clear_failure(tmp_path):
    paths = Paths(drop=tmp_path / "drop", home=tmp_path / "home")
    with pytest.raises(build_mod.BuildFailed, match="no landed delivery"):
        build_mod.build("2020-04-24", "r", paths=paths)


def test_cli_help_names_the_options(capsys):
    from program_reporting import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["build", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--full-refresh" in out and "restate_from" in out and "--ds" in out


def test_ensure_manifest_for_cosmos():
    manifest = build_mod.ensure_manifest()
    data = json.loads(manifest.read_text())
    models = {n["name"] for n in data["nodes"].values() if n["resource_type"] == "model"}
    assert {"kpi_program_daily", "kpi_segment_daily", "kpi_target_progress", "int_credit_line_states"} <= models
    contracts = {
        n["name"]: n["config"]["contract"]["enforced"]
        for n in data["nodes"].values()
        if n["resource_type"] == "model" and n["name"].startswith("kpi_")
    }
    assert contracts == {"kpi_program_daily": True, "kpi_segment_daily": True, "kpi_target_progress": True}
    # fresh now: a second call does not parse again
    mtime = manifest.stat().st_mtime_ns
    assert build_mod.ensure_manifest() == manifest and manifest.stat().st_mtime_ns == mtime
