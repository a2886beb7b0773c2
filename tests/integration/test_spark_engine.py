"""The same dbt project on Apache Spark (dbt-spark, the `spark` target, pyspark
in local mode) and on DuckDB, built by the pipeline's own build from the same
landed fortnight, with late postings and a correction: the three published
marts are equal cell by cell, with the same column types, after a full build
and after an incremental night that restates the corrected delivery.

Spark runs in this process (session mode), its tables and Derby metastore in
the home's warehouse/spark/, nothing on the network. A Spark build of the
~190 dbt nodes takes minutes where DuckDB takes seconds (each node is a Spark
job), so the fortnight is landed as 13 nights at once and one incremental
night follows; the README gives the test's time.
"""

from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import pytest
from helpers.deliveries import write_delivery

from program_reporting.core import settings
from program_reporting.core.published import KPI_KEYS
from program_reporting.landing import land as landing
from program_reporting.warehouse import build

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.slow]

START = dt.date(2020, 6, 2)
DAYS = [(START + dt.timedelta(days=i)).isoformat() for i in range(14)]
CORRECTED = DAYS[9]  # a credit_events delivery delivered again with the last night (kpis.md restatements)
EMPTIED = DAYS[11]  # and one delivered again with no rows: every row of that date must go, on Spark too

# DuckDB's type of a mart column -> Spark's
SPARK_TYPE = {"VARCHAR": "string", "BIGINT": "bigint", "DATE": "date", "INTEGER": "int", "BOOLEAN": "boolean"}

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pyspark needs a Java runtime (17)")


def _land(p, days):
    for ds in days:
        for source in settings.SOURCES:
            landing.land(source, ds, paths=p)
        landing.release_orphans(ds, paths=p)


def _build_both(p, monkeypatch, ds: str, night: str) -> dict[str, object]:
    """One night on each engine, each staged as the candidate set the gate would read."""
    out = {}
    for engine in ("duckdb", "spark"):
        monkeypatch.setenv("PROGRAM_REPORTING_ENGINE", engine)
        if engine == "spark":
            # dbt's own setting (--exclude-resource-type): the data tests, each a Spark job, are
            # the same SQL as on DuckDB, which runs them; here the question is the marts' cells
            monkeypatch.setenv("DBT_EXCLUDE_RESOURCE_TYPES", "test unit_test")
        summary = build.build(ds, f"{night}-{engine}", paths=p)
        monkeypatch.delenv("DBT_EXCLUDE_RESOURCE_TYPES", raising=False)
        out[engine] = (summary, build.stage_audit(f"{night}-{engine}", ds, paths=p))
    monkeypatch.delenv("PROGRAM_REPORTING_ENGINE")
    return out


def _spark_types(p, table: str) -> list[tuple[str, str]]:
    from program_reporting.warehouse import spark

    frame = spark.session(p).table(f"{spark.schema()}.{table}")
    return [(f.name, f.dataType.simpleString()) for f in frame.schema.fields]


def _assert_equal_marts(p, duck_set, spark_set) -> dict[str, int]:
    """Cell by cell, types included: Spark's own column types against DuckDB's, then the
    values of the two candidate sets (Spark's read out into DuckDB by stage_audit)."""
    rows = {}
    duck = duckdb.connect(str(duck_set), read_only=True)
    other = duckdb.connect(str(spark_set), read_only=True)
    try:
        for table, key in KPI_KEYS.items():
            described = duck.execute(f"DESCRIBE {table}").fetchall()
            expected_types = [
                (name, t.lower().replace(" ", "") if t.startswith("DECIMAL") else SPARK_TYPE[t])
                for name, t, *_ in described
            ]
            assert _spark_types(p, table) == expected_types, table
            assert other.execute(f"DESCRIBE {table}").fetchall() == described, table

            order = ", ".join(key)
            expected = duck.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            actual = other.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            assert len(expected) > 0 and len(actual) == len(expected), (table, len(expected), len(actual))
            cols = [d[0] for d in described]
            diffs = [
                (e[: len(key)], cols[j], e[j], a[j])
                for e, a in zip(expected, actual, strict=True)
                for j in range(len(cols))
                if e[j] != a[j] or type(e[j]) is not type(a[j])
            ]
            assert not diffs, f"{table}: {len(diffs)} cells differ, first: {diffs[:5]}"
            rows[table] = len(expected)
        # not trivially equal: money, rates and jobs are there
        drawn, util, jobs = other.execute(
            "SELECT sum(drawn_to_date), max(utilization_rate), sum(jobs_current) FROM kpi_program_daily"
        ).fetchone()
        assert drawn > 0 and util is not None and jobs > 0
    finally:
        duck.close()
        other.close()
    return rows


def _drawn_to_date(candidate_set, ds: str):
    with duckdb.connect(str(candidate_set), read_only=True) as con:
        return con.execute("SELECT sum(drawn_to_date) FROM kpi_program_daily WHERE as_of_date = ?", [ds]).fetchone()[0]


@needs_java
def test_spark_builds_the_marts_duckdb_builds_full_and_incremental(env_paths, monkeypatch):
    from program_reporting.tools.simulate.simulator import redeliver_ds, simulate

    p = env_paths
    monkeypatch.setenv("PROGRAM_REPORTING_SPARK_SHUFFLE_PARTITIONS", "2")
    try:
        # late postings, orphans and contract-breaking rows included: both engines read the same raw layer
        simulated = simulate(start=START, days=len(DAYS), merchants=60, seed=5, drop=p.drop, progress=False)
        assert any(simulated["late_postings"].values())
        _land(p, DAYS[:-1])

        first = _build_both(p, monkeypatch, DAYS[-2], "full")
        assert first["duckdb"][0]["full_refresh"] and first["spark"][0]["full_refresh"]
        _assert_equal_marts(p, first["duckdb"][1], first["spark"][1])

        # the last night: its deliveries, and a correction of an earlier credit_events delivery
        changed = redeliver_ds("credit_events", CORRECTED, drop=p.drop, seed=7, share=0.2)["changed_keys"]
        assert changed
        landing.land("credit_events", CORRECTED, paths=p)
        write_delivery(p.drop, "credit_events", EMPTIED, [])
        landing.land("credit_events", EMPTIED, paths=p)
        _land(p, DAYS[-1:])

        night = _build_both(p, monkeypatch, DAYS[-1], "night")
        for engine in ("duckdb", "spark"):
            summary = night[engine][0]
            assert not summary["full_refresh"], engine
            # the correction restates from its reach, not the whole history, on both engines
            assert build.FULL_HISTORY < summary["restate_from"] <= CORRECTED, (engine, summary["restate_from"])
        assert night["duckdb"][0]["restate_from"] == night["spark"][0]["restate_from"]
        rows = _assert_equal_marts(p, night["duckdb"][1], night["spark"][1])
        # the emptied date's events are gone from Spark's staging, not kept by a partition left unwritten
        from program_reporting.warehouse import spark

        left = (
            spark.session(p)
            .sql(f"SELECT count(*) FROM {spark.schema()}.stg_credit_events WHERE _ds = DATE '{EMPTIED}'")
            .collect()[0][0]
        )
        assert left == 0
        assert rows["kpi_program_daily"] >= len(DAYS)

        # the correction reached the marts: the night's set differs from the first one
        assert _drawn_to_date(night["spark"][1], CORRECTED) != _drawn_to_date(first["spark"][1], CORRECTED)
    finally:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
