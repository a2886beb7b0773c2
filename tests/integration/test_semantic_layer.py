"""The semantic layer (dbt_project/models/semantic/, docs/semantic-layer.md) on a small built warehouse:
two programs, 130 days, so that PAR30, PAR90 and the 90-day survival cohort are reached (raw_factory).

- `dbt parse` writes the semantic manifest and `mf validate-configs` passes, against the warehouse;
  a measure over a column the table lacks fails it.
- `mf query` gives the published figures: every metric named like a kpi_program_daily column, by
  program and date, equals that column on every row; by region, business type, size class and full
  segment it equals kpi_segment_daily's sums (ratios: the ratio of those sums); by month a stock is
  its last date's figure and the day's purchases add up; the cumulative metric is drawn_to_date.
- The SQL of program_reporting.warehouse.semantic.metric_sql(), over each table it names, gives the
  published figures too.

Rounding: the published tables round rates half away from zero to 6 decimals (money: 2) and
MetricFlow does not round (it divides as DOUBLE). A ratio agrees when it is within half a unit of
the published figure's last decimal (plus 1e-9 for the DOUBLE), which is exactly what rounding the
exact quotient allows; sums of published figures are compared exactly. Against the unrounded
ratio of the segment table's sums a ratio agrees to 1e-12, relative."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from helpers.raw_factory import make_raw_programs

from program_reporting.core.settings import DBT_PROJECT_DIR, Paths
from program_reporting.warehouse import build as build_mod
from program_reporting.warehouse.semantic import MetricSQL, metric_sql

pytestmark = pytest.mark.timeout(900)

BIN = Path(sys.executable).parent
PROGRAMS = {"SPARK-2020": dict(seed=12, merchants=50), "SPRING-THUNDER-2020": dict(seed=5, merchants=30)}
METRICS = metric_sql()
SEGMENT_DIMENSIONS = ("region", "business_type", "size_class")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """A built warehouse and a copy of the dbt project parsed for it: mf reads the semantic
    manifest from <project>/target/ and logs into <project>/logs/, which stay out of the repo."""
    work = tmp_path_factory.mktemp("semantic")
    paths = Paths(drop=work / "drop", home=work / "home")
    last = make_raw_programs(paths.home, PROGRAMS, days=130)
    build_mod.build(last.isoformat(), "semantic", paths=paths)
    project = work / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    parse = subprocess.run(
        [BIN / "dbt", "parse", "--profiles-dir", project, "--project-dir", project, "--no-use-colors"],
        env=mf_environment(paths, project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert parse.returncode == 0, parse.stdout[-3000:]
    assert (project / "target" / "semantic_manifest.json").exists()
    return paths, project


def mf_environment(paths: Paths, project: Path) -> dict[str, str]:
    """mf finds the project and profiles.yml through DBT_PROJECT_DIR and DBT_PROFILES_DIR, the
    warehouse through PROGRAM_REPORTING_HOME (profiles.yml). At every start mf asks pypi.org whether
    a newer dbt-metricflow exists (update_checker, no switch to turn it off): nothing may go to the
    network at run time, so its HTTPS goes to a closed local port, fails at once, and mf goes on."""
    env = dict(os.environ)
    env.update(
        PROGRAM_REPORTING_HOME=str(paths.home),
        DBT_PROJECT_DIR=str(project),
        DBT_PROFILES_DIR=str(project),
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
        DO_NOT_TRACK="1",
        HTTPS_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
    )
    for name in ("NO_PROXY", "no_proxy"):
        env.pop(name, None)
    return env


def mf(warehouse, *args: str) -> subprocess.CompletedProcess:
    paths, project = warehouse
    return subprocess.run(
        [BIN / "mf", *args],
        cwd=project,
        env=mf_environment(paths, project),
        capture_output=True,
        text=True,
        timeout=300,
    )


def query(warehouse, metrics: list[str], group_by: list[str], *extra: str) -> list[dict]:
    """`mf query ... --csv`: one dict per row, the CSV's strings ('' for null)."""
    out = warehouse[1] / "target" / f"query-{len(list((warehouse[1] / 'target').glob('query-*')))}.csv"
    done = mf(
        warehouse,
        "query",
        "--metrics",
        ",".join(metrics),
        "--group-by",
        ",".join(group_by),
        "--csv",
        str(out),
        "--quiet",
        *extra,
    )
    assert done.returncode == 0 and out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


def published(paths: Paths, sql: str) -> list[dict]:
    con = duckdb.connect(str(paths.warehouse_db), read_only=True)
    try:
        rel = con.execute(sql)
        cols = [c[0] for c in rel.description]
        return [dict(zip(cols, r)) for r in rel.fetchall()]
    finally:
        con.close()


def agrees(metric: MetricSQL, got, expected) -> bool:
    """got (mf's CSV string or a SQL value) against a published figure, as the module doc says."""
    if got in ("", None) or expected is None:
        return got in ("", None) and expected is None
    if metric.type == "ratio":
        decimals = 6 if metric.unit == "rate" else 2
        return abs(float(got) - float(expected)) <= 0.5 * 10**-decimals + 1e-9
    return Decimal(str(got)) == Decimal(expected)


def day(value) -> str:
    return str(value)[:10]


def program_daily_metrics(paths: Paths) -> list[str]:
    columns = published(paths, "SELECT * FROM kpi_program_daily LIMIT 1")[0]
    return [name for name in METRICS if name in columns]


# --------------------------------------------------------------------------


def test_mf_validate_configs_passes_against_the_warehouse(warehouse):
    done = mf(warehouse, "validate-configs", "--show-all")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "Successfully validated the semantics of built manifest (ERRORS: 0" in out
    for step in ("semantic models", "dimensions", "entities", "measures", "metrics"):
        assert f"Successfully validated {step} against data warehouse (ERRORS: 0, FUTURE_ERRORS: 0, WARNINGS: 0)" in out
    # the one warning: MetricFlow moves a dbt 1.11 cumulative metric's measure to a metric input
    # of its own, then warns that it has both (dbt 1.11 has no way to name the metric input)
    warnings = [line for line in out.splitlines() if "WARNING:" in line]
    assert len(warnings) == 1 and "drawn_cumulative" in warnings[0], warnings


def test_mf_validate_configs_fails_on_a_measure_the_table_cannot_give(warehouse, tmp_path):
    paths, project = warehouse
    broken = tmp_path / "dbt_project"
    shutil.copytree(project, broken, ignore=shutil.ignore_patterns("logs", "query-*"))
    manifest_path = broken / "target" / "semantic_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model = next(m for m in manifest["semantic_models"] if m["name"] == "segment_daily")
    next(m for m in model["measures"] if m["name"] == "par30_balance")["expr"] = "par30_amount"
    manifest_path.write_text(json.dumps(manifest))
    done = mf((paths, broken), "validate-configs")
    assert done.returncode != 0
    assert "par30_amount" in done.stdout + done.stderr


def test_every_program_figure_by_program_and_date_equals_kpi_program_daily(warehouse):
    paths, _ = warehouse
    names = program_daily_metrics(paths)
    # every figure kpis.md publishes in kpi_program_daily has a metric of its name
    assert len(names) == 27, names
    got = {
        (day(r["metric_time__day"]), r["program"]): r for r in query(warehouse, names, ["metric_time__day", "program"])
    }
    rows = published(paths, "SELECT * FROM kpi_program_daily")
    assert set(got) == {(day(r["as_of_date"]), r["program_code"]) for r in rows}
    differ = [
        (r["program_code"], day(r["as_of_date"]), name, got[day(r["as_of_date"]), r["program_code"]][name], r[name])
        for r in rows
        for name in names
        if not agrees(METRICS[name], got[day(r["as_of_date"]), r["program_code"]][name], r[name])
    ]
    assert differ == []
    # not vacuous: the data reached every kind of figure
    assert {p for _, p in got} == {"SPARK-2020", "SPRING-THUNDER-2020"} and len(rows) > 500
    for name in ("par30_rate", "par90_rate", "default_rate", "interest_subsidy_cost_to_date"):
        assert max(Decimal(r[name] or 0) for r in got.values()) > 0, name
    assert 0 < min(float(r["survival_rate_90d"]) for r in got.values() if r["survival_rate_90d"]) < 1


def segment_sums(paths: Paths, dimensions: tuple[str, ...]) -> dict[tuple, dict]:
    """kpi_segment_daily summed by program, date and the dimensions: exact decimals."""
    columns = [c for c in published(paths, "SELECT * FROM kpi_segment_daily LIMIT 1")[0] if c in METRICS]
    keys = ", ".join(("program_code", "as_of_date", *dimensions))
    rows = published(
        paths,
        f"SELECT {keys}, {', '.join(f'sum({c}) AS {c}' for c in columns)} FROM kpi_segment_daily GROUP BY ALL",
    )
    return {(r["program_code"], day(r["as_of_date"]), *(r[d] for d in dimensions)): r for r in rows}


def ratio_of_sums(metric: str, sums: dict) -> float | None:
    numerator, denominator = {
        "par30_rate": ("par30_balance", "outstanding_balance"),
        "reporting_coverage": ("reporting_merchants", "enrolled_merchants"),
        "utilization_rate": ("outstanding_balance", "credit_limit_total"),
        "jobs_retention_rate": ("jobs_retained", "jobs_baseline"),
        "default_rate": ("written_off_to_date", "drawn_to_date"),
    }[metric]
    return None if not sums[denominator] else float(Decimal(sums[numerator]) / Decimal(sums[denominator]))


def same_ratio(got: str, expected: float | None) -> bool:
    if got == "" or expected is None:
        return got == "" and expected is None
    return math.isclose(float(got), expected, rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize(
    "dimensions, ratios",
    [
        (("region",), ["par30_rate", "reporting_coverage"]),
        (("business_type", "size_class"), ["utilization_rate", "jobs_retention_rate", "default_rate"]),
    ],
)
def test_ratios_by_segment_dimension_are_ratios_of_the_segment_sums(warehouse, dimensions, ratios):
    paths, _ = warehouse
    expected = segment_sums(paths, dimensions)
    group_by = ["metric_time__day", "program", *(f"segment__{d}" for d in dimensions)]
    simple = ["enrolled_merchants", "outstanding_balance", "par30_balance", "jobs_retained"]
    got = {
        (r["program"], day(r["metric_time__day"]), *(r[f"segment__{d}"] for d in dimensions)): r
        for r in query(warehouse, simple + ratios, group_by)
    }
    assert set(got) == set(expected)
    assert [(k, m) for k, r in got.items() for m in simple if Decimal(r[m]) != expected[k][m]] == []
    assert [(k, m) for k, r in got.items() for m in ratios if not same_ratio(r[m], ratio_of_sums(m, expected[k]))] == []
    # not vacuous: more than one value of each dimension, and a ratio that is neither 0 nor 1
    for i, d in enumerate(dimensions):
        assert len({k[2 + i] for k in got}) > 1, d
    assert any(0 < float(r[ratios[0]] or 0) < 1 for r in got.values())


def test_par90_and_survival_exist_by_program_only(warehouse):
    """kpis.md publishes neither numerator by segment: MetricFlow refuses, rather than averaging."""
    for metric in ("par90_rate", "survival_rate_90d"):
        done = mf(warehouse, "query", "--metrics", metric, "--group-by", "metric_time__day,segment__region", "--quiet")
        assert done.returncode != 0, metric
        assert "segment__region" in done.stdout + done.stderr


def test_every_segment_figure_by_full_segment_equals_kpi_segment_daily(warehouse):
    paths, _ = warehouse
    rows = published(paths, "SELECT * FROM kpi_segment_daily")
    names = [name for name in METRICS if name in rows[0]]
    assert len(names) == 18, names
    group_by = ["metric_time__day", "program", *(f"segment__{d}" for d in SEGMENT_DIMENSIONS)]
    got = {
        (r["program"], day(r["metric_time__day"]), *(r[f"segment__{d}"] for d in SEGMENT_DIMENSIONS)): r
        for r in query(warehouse, names, group_by)
    }
    key = lambda r: (r["program_code"], day(r["as_of_date"]), *(r[d] for d in SEGMENT_DIMENSIONS))  # noqa: E731
    assert set(got) == {key(r) for r in rows}
    assert [(key(r), n) for r in rows for n in names if not agrees(METRICS[n], got[key(r)][n], r[n])] == []


def test_by_month_a_stock_is_its_last_date_and_purchases_add_up(warehouse):
    """The stocks are semi-additive (non_additive_dimension as_of_date): a month's figure is the
    figure of its last date, never the sum of its dates; goods_purchased_on_day is a flow."""
    paths, _ = warehouse
    stocks = ["enrolled_merchants", "outstanding_balance", "par30_rate", "par90_rate", "reporting_coverage"]
    got = {
        (r["program"], day(r["metric_time__month"])): r
        for r in query(warehouse, [*stocks, "goods_purchased_on_day"], ["metric_time__month", "program"])
    }
    rows = published(paths, "SELECT * FROM kpi_program_daily ORDER BY as_of_date")
    last_dates: dict[str, dt.date] = {}
    for r in rows:
        month = r["as_of_date"].replace(day=1).isoformat()
        last_dates[month] = max(last_dates.get(month, r["as_of_date"]), r["as_of_date"])
    expected: dict[tuple, dict] = {}
    for r in rows:
        month = r["as_of_date"].replace(day=1).isoformat()
        e = expected.setdefault((r["program_code"], month), {"goods_purchased_on_day": Decimal(0)})
        e["goods_purchased_on_day"] += r["goods_purchased_on_day"]
        if r["as_of_date"] == last_dates[month]:
            e.update({s: r[s] for s in stocks})
    assert set(got) == set(expected) and len(got) >= 16
    assert [(k, s) for k, r in got.items() for s in expected[k] if not agrees(METRICS[s], r[s], expected[k][s])] == []
    # without a date at all: the latest date's figures
    latest = {r["program_code"]: r for r in rows if r["as_of_date"] == max(x["as_of_date"] for x in rows)}
    overall = {r["program"]: r for r in query(warehouse, ["enrolled_merchants", "par30_rate"], ["program"])}
    assert {p: int(r["enrolled_merchants"]) for p, r in overall.items()} == {
        p: r["enrolled_merchants"] for p, r in latest.items()
    }
    assert all(agrees(METRICS["par30_rate"], overall[p]["par30_rate"], latest[p]["par30_rate"]) for p in latest)


def test_drawn_cumulative_is_drawn_to_date_by_program(warehouse):
    paths, _ = warehouse
    got = {
        (r["program"], day(r["metric_time__day"])): r["drawn_cumulative"]
        for r in query(warehouse, ["drawn_cumulative"], ["metric_time__day", "program"])
    }
    rows = published(paths, "SELECT program_code, as_of_date, drawn_to_date FROM kpi_program_daily")
    expected = {(r["program_code"], day(r["as_of_date"])): r["drawn_to_date"] for r in rows}
    # the running sum starts with a program's first purchase; before it, drawn_to_date is 0
    assert {k: v for k, v in expected.items() if k not in got} == {k: 0 for k in expected if k not in got}
    assert set(got) <= set(expected)
    assert [(k, v, expected[k]) for k, v in got.items() if Decimal(v) != expected[k]] == []
    assert max(expected.values()) > 0


def test_targets_by_metric_and_the_filtered_target_metrics(warehouse):
    paths, _ = warehouse
    got = {
        (r["program"], day(r["metric_time__day"]), r["target__metric"]): r
        for r in query(
            warehouse,
            ["target_value", "target_actual_value", "target_progress_rate"],
            ["metric_time__day", "program", "target__metric"],
        )
    }
    rows = published(paths, "SELECT * FROM kpi_target_progress")
    key = lambda r: (r["program_code"], day(r["as_of_date"]), r["metric"])  # noqa: E731
    assert set(got) == {key(r) for r in rows} and len(rows) > 100
    pairs = {
        "target_value": "target_value",
        "target_actual_value": "actual_value",
        "target_progress_rate": "progress_rate",
    }
    assert [(key(r), m) for r in rows for m, c in pairs.items() if not agrees(METRICS[m], got[key(r)][m], r[c])] == []
    targets = query(warehouse, ["jobs_retained_target", "drawn_to_date_target"], ["program"])
    assert [
        (r["program"], Decimal(r["jobs_retained_target"]), Decimal(r["drawn_to_date_target"])) for r in targets
    ] == [("SPARK-2020", Decimal("5000000.00"), Decimal("50000000000.00"))]


def test_metric_sql_over_each_table_gives_the_published_figures(warehouse):
    """The formulas a BI tool gets from metric_sql(), run as SQL over each table they name."""
    paths, _ = warehouse
    program_rows = {
        (r["program_code"], r["as_of_date"]): r for r in published(paths, "SELECT * FROM kpi_program_daily")
    }
    target_rows = {
        (r["program_code"], r["as_of_date"], r["metric"]): r
        for r in published(paths, "SELECT * FROM kpi_target_progress")
    }
    checked = []
    for metric in METRICS.values():
        if metric.sql is None:
            continue
        for table in metric.tables:
            if table == "kpi_target_progress":
                column = {"target_value": "target_value", "target_actual_value": "actual_value"}.get(
                    metric.name, "progress_rate"
                )
                got = published(
                    paths,
                    f"SELECT program_code, as_of_date, metric, {metric.sql} AS v FROM {table} GROUP BY ALL",
                )
                if metric.name.endswith("_target"):  # filtered to one target: the rows of the others are null
                    wanted = metric.name.removesuffix("_target")
                    bad = [
                        r
                        for r in got
                        if (r["v"] is not None) != (r["metric"] == wanted)
                        or (
                            r["v"] is not None
                            and r["v"] != target_rows[r["program_code"], r["as_of_date"], wanted]["target_value"]
                        )
                    ]
                else:
                    bad = [
                        r
                        for r in got
                        if not agrees(
                            metric, r["v"], target_rows[r["program_code"], r["as_of_date"], r["metric"]][column]
                        )
                    ]
            else:
                got = published(paths, f"SELECT program_code, as_of_date, {metric.sql} AS v FROM {table} GROUP BY ALL")
                if metric.name not in program_rows[next(iter(program_rows))]:
                    continue  # a rebuilt numerator (par90_balance, survivors_90d): not published
                bad = [
                    r
                    for r in got
                    if not agrees(metric, r["v"], program_rows[r["program_code"], r["as_of_date"]][metric.name])
                ]
            assert got and bad == [], (metric.name, table, metric.sql, bad[:3])
            checked.append((metric.name, table))
    assert len(checked) >= 27 + 24 + 6  # every program figure over its table, the segment ones over theirs, targets


def test_metric_sql_reads_the_definitions_dbt_parsed(warehouse):
    """metric_sql() reads the YAML itself (no dbt run); dbt's semantic manifest has the same metrics."""
    manifest = json.loads((warehouse[1] / "target" / "semantic_manifest.json").read_text())
    assert {m["name"]: (m["type"], m["label"]) for m in manifest["metrics"]} == {
        name: (m.type, m.label) for name, m in METRICS.items()
    }
    measures = {x["name"]: x for model in manifest["semantic_models"] for x in model["measures"]}
    for m in manifest["metrics"]:
        if m["type"] == "simple" and not m["filter"]:
            measure = measures[m["type_params"]["measure"]["name"]]
            assert METRICS[m["name"]].sql == f"{measure['agg'].upper()}({measure['expr'] or measure['name']})"
        if m["type"] == "ratio":
            numerator, denominator = (
                METRICS[m["type_params"][side]["name"]].sql for side in ("numerator", "denominator")
            )
            assert METRICS[m["name"]].sql == f"CAST({numerator} AS DOUBLE PRECISION) / NULLIF({denominator}, 0)"
