"""The marts gate on PostgreSQL: the same suites (expectations/*.json), run by
GX's SQL datasource (`context.data_sources.add_postgres`, table assets, whole
table batch definitions) against a set of KPI tables in a PostgreSQL schema.

How each frame of a suite reaches GX:
- a whole-table frame (`table: kpi_program_daily` ...) is the PostgreSQL
  table itself: GX evaluates those expectations in PostgreSQL;
- a derived frame (segment sums, day-over-day drops, column names ...) is
  written in DuckDB SQL beside the suite. It is computed by DuckDB from the
  rows read back out of PostgreSQL (not from the DuckDB candidate: what is
  checked is what PostgreSQL holds), stored as a table next to the set, and
  GX evaluates the expectations on that PostgreSQL table.

The rules of the DuckDB gate hold unchanged: a frame that cannot be computed,
a missing table or column, an empty frame that is not declared legitimately
empty, and an expectation GX could not evaluate all count as failures, and a
gate that evaluated nothing fails (gate.GateResult.passed).
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from pathlib import Path

import duckdb

from program_reporting.core import settings
from program_reporting.postgres import connection as pg
from program_reporting.validation import gate
from program_reporting.validation.suites import (
    CheckResult,
    Frame,
    _check,
    empty_frame_checks,
    frame_sql,
    interpret,
    load_suites,
    new_context,
    scrub_gx_result,
)

log = logging.getLogger(__name__)

STAGE = "marts"
FRAME_TABLE_PREFIX = "gx__"


def _whole_table(frame: Frame) -> str | None:
    return frame.table if frame.table in gate.MART_TABLES else None


def _export(cur, schema: str, tables, target: Path, tmp_dir: Path) -> list[str]:
    """Copy the tables of `schema` that exist into the DuckDB file `target`."""
    duck = duckdb.connect(str(target))
    present = []
    try:
        for t in tables:
            if pg.pg_columns(cur, schema, t):
                pg.copy_pg_to_duck(cur, schema, t, duck, t, tmp_dir)
                present.append(t)
        duck.execute("CHECKPOINT")
    finally:
        duck.close()
    return present


def validate_schema(run_id: str, ds: str, schema: str, previous_schema: str | None = settings.PUBLISHED_SCHEMA,
                    pg_settings: settings.PostgresSettings | None = None,
                    tmp_dir: Path | None = None) -> gate.GateResult:
    """Run the marts suites on the KPI tables in PostgreSQL schema `schema`.

    `previous_schema` holds the previously published set (day-over-day guards);
    derived frames are stored as `gx__<suite>__<frame>` tables in `schema` and
    dropped afterwards."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from psycopg2 import sql

    settings.parse_ds(ds)
    started = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    suites = load_suites(STAGE)
    params = gate._parameters()
    conn = pg.connect(pg_settings)
    frame_tables: list[str] = []
    results: list[CheckResult] = []
    gx_results = []
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="gate-pg-") as d:
        work = Path(d)
        try:
            with conn.cursor() as cur:
                if not pg.schema_exists(cur, schema):
                    raise gate.GateError(f"PostgreSQL schema {schema!r} does not exist")
                present = _export(cur, schema, gate.MART_TABLES, work / "candidate.duckdb", work)
                previous = None
                if previous_schema and pg.pg_columns(cur, previous_schema, "kpi_program_daily"):
                    _export(cur, previous_schema, ["kpi_program_daily"], work / "previous.duckdb", work)
                    previous = work / "previous.duckdb"
            conn.commit()
            # The DuckDB gate's own views over the rows read back from PostgreSQL.
            con = gate._marts_connection(run_id, ds, work / "candidate.duckdb", previous)
            context = new_context()
            source = context.data_sources.add_postgres("warehouse", connection_string=pg.sqlalchemy_url(pg_settings))
            try:
                for suite in suites:
                    for frame in suite.frames.values():
                        configs = suite.expectations_of(frame.name)
                        if not configs:
                            continue
                        t0 = time.monotonic()
                        table = _whole_table(frame)
                        try:
                            if table is not None:
                                if table not in present:
                                    raise gate.GateError(f"{schema}.{table} does not exist")
                                with conn.cursor() as cur:
                                    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
                                    rows = cur.fetchone()[0]
                            else:
                                table = f"{FRAME_TABLE_PREFIX}{suite.name}__{frame.name}"[:63]
                                with conn.cursor() as cur:
                                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table)))
                                    rows = pg.copy_query_to_pg(con, frame_sql(con, frame), cur, schema, table, work)
                                conn.commit()
                                frame_tables.append(table)
                        except Exception as exc:  # noqa: BLE001 - reported per check, like the DuckDB gate
                            conn.rollback()
                            msg = f"frame {frame.name!r} could not be computed: {exc}"
                            log.error("%s: %s", suite.name, msg)
                            results.extend(_check(suite, frame, e, success=False, evaluated=False, note=msg)
                                           for e in configs)
                            continue
                        if rows == 0:
                            results.extend(empty_frame_checks(con, suite, frame, configs))
                            continue
                        asset = source.add_table_asset(f"{suite.name}__{frame.name}", table_name=table,
                                                       schema_name=schema)
                        batch = asset.add_batch_definition_whole_table("whole").get_batch()
                        gx_suite = gx.ExpectationSuite(name=f"{suite.name}.{frame.name}", expectations=[
                            ExpectationConfiguration(type=e["type"], kwargs=e.get("kwargs", {}), meta=e["meta"],
                                                     severity=e["severity"]).to_domain_obj() for e in configs])
                        result = batch.validate(gx_suite, expectation_parameters=params, result_format={
                            "result_format": "SUMMARY", "partial_unexpected_count": 20})
                        checks = interpret(suite, frame, configs, result)
                        results.extend(checks)
                        scrub_gx_result(result)  # no personal data in reports rendered from it
                        gx_results.append((f"{suite.name}.{frame.name}", result))
                        log.info("postgres %s.%s: %d rows, %d checks, %d failed, %.2fs", suite.name, frame.name,
                                 rows, len(checks), sum(not c.success for c in checks), time.monotonic() - t0)
            finally:
                con.close()
        finally:
            try:
                with conn.cursor() as cur:
                    for t in frame_tables:
                        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, t)))
                conn.commit()
            finally:
                conn.close()
    result = gate.GateResult(STAGE, ds, run_id, results, started_at, time.monotonic() - started,
                             {"postgres_schema": schema, "previous_schema": previous_schema, "engine": "postgresql"},
                             gx_results=gx_results)
    (log.info if result.passed else log.error)("postgres %s", result.summary())
    return result
