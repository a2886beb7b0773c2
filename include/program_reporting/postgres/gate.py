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

Every frame with rows gets a GX ValidationDefinition, and one GX Checkpoint
runs them all: here every batch is a table, so one run covers the set.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from program_reporting.core import settings
from program_reporting.postgres import connection as pg
from program_reporting.validation import gate
from program_reporting.validation.suites import (
    RESULT_FORMAT,
    CheckResult,
    Frame,
    Suite,
    add_validation,
    empty_frame_checks,
    frame_sql,
    interpret,
    load_suites,
    new_context,
    not_evaluated,
    scrub_gx_result,
)

log = logging.getLogger(__name__)

STAGE = "marts"
FRAME_TABLE_PREFIX = "gx__"


@dataclass
class _Pending:
    """A frame with rows, validated when the checkpoint runs."""

    suite: Suite
    frame: Frame
    validation: Any  # GX ValidationDefinition
    rows: int


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


def validate_schema(
    run_id: str,
    ds: str,
    schema: str,
    previous_schema: str | None = settings.PUBLISHED_SCHEMA,
    pg_settings: settings.PostgresSettings | None = None,
    tmp_dir: Path | None = None,
) -> gate.GateResult:
    """Run the marts suites on the KPI tables in PostgreSQL schema `schema`.

    `previous_schema` holds the previously published set (day-over-day guards);
    derived frames are stored as `gx__<suite>__<frame>` tables in `schema` and
    dropped afterwards."""
    import great_expectations as gx
    from psycopg2 import sql

    settings.parse_ds(ds)
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    suites = load_suites(STAGE)
    params = gate.expectation_parameters()
    conn = pg.connect(pg_settings)
    frame_tables: list[str] = []
    # per frame, in suite order: its checks, or the validation the checkpoint runs
    outcomes: list[list[CheckResult] | _Pending] = []
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
            con = gate.marts_connection(run_id, ds, work / "candidate.duckdb", previous)
            context = new_context()
            source = context.data_sources.add_postgres("warehouse", connection_string=pg.sqlalchemy_url(pg_settings))
            try:
                for suite in suites:
                    for frame in suite.frames.values():
                        configs = suite.expectations_of(frame.name)
                        if not configs:
                            continue
                        table = _whole_table(frame)
                        try:
                            if table is not None:
                                if table not in present:
                                    raise gate.GateError(f"{schema}.{table} does not exist")
                                with conn.cursor() as cur:
                                    cur.execute(
                                        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
                                    )
                                    rows = cur.fetchone()[0]
                            else:
                                table = f"{FRAME_TABLE_PREFIX}{suite.name}__{frame.name}"[:63]
                                with conn.cursor() as cur:
                                    cur.execute(
                                        sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table))
                                    )
                                    rows = pg.copy_query_to_pg(con, frame_sql(con, frame), cur, schema, table, work)
                                conn.commit()
                                frame_tables.append(table)
                        except Exception as exc:  # noqa: BLE001 - reported per check, like the DuckDB gate
                            conn.rollback()
                            msg = f"frame {frame.name!r} could not be computed: {exc}"
                            log.error("%s: %s", suite.name, msg)
                            outcomes.append(not_evaluated(suite, frame, msg))
                            continue
                        if rows == 0:
                            outcomes.append(empty_frame_checks(con, suite, frame, configs))
                            continue
                        asset = source.add_table_asset(
                            f"{suite.name}__{frame.name}", table_name=table, schema_name=schema
                        )
                        validation = add_validation(
                            context, asset.add_batch_definition_whole_table("whole"), suite, frame
                        )
                        outcomes.append(_Pending(suite, frame, validation, rows))
            finally:
                con.close()
            validations = [o.validation for o in outcomes if isinstance(o, _Pending)]
            by_validation = {}
            if validations:
                t0 = time.monotonic()
                checkpoint = context.checkpoints.add(
                    gx.Checkpoint(
                        name="marts_on_postgres", validation_definitions=validations, result_format=RESULT_FORMAT
                    )
                )
                run = checkpoint.run(expectation_parameters=params)
                by_validation = {r.meta["validation_id"]: r for r in run.run_results.values()}
                log.info("postgres checkpoint: %d frames validated, %.2fs", len(validations), time.monotonic() - t0)
            for outcome in outcomes:
                if not isinstance(outcome, _Pending):
                    results.extend(outcome)
                    continue
                result = by_validation[outcome.validation.id]
                checks = interpret(
                    outcome.suite, outcome.frame, outcome.suite.expectations_of(outcome.frame.name), result
                )
                results.extend(checks)
                scrub_gx_result(result)  # no personal data in reports rendered from it
                gx_results.append((outcome.validation.name, result))
                log.info(
                    "postgres %s: %d rows, %d checks, %d failed",
                    outcome.validation.name,
                    outcome.rows,
                    len(checks),
                    sum(not c.success for c in checks),
                )
        finally:
            try:
                with conn.cursor() as cur:
                    for t in frame_tables:
                        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, t)))
                conn.commit()
            finally:
                conn.close()
    result = gate.GateResult(
        STAGE,
        ds,
        run_id,
        results,
        started_at,
        time.monotonic() - started,
        {"postgres_schema": schema, "previous_schema": previous_schema, "engine": "postgresql"},
        gx_results=gx_results,
        engine="postgresql",
    )
    (log.info if result.passed else log.error)("%s", result.summary())
    return result
