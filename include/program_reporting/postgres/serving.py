"""Publish a validated KPI set to the PostgreSQL serving schema BI tools read.

  program-reporting publish-pg --run-id RUN [--source FILE]

Write-audit-publish on PostgreSQL, for the production profile
(PROGRAM_REPORTING_TARGET=postgres; connection from PROGRAM_REPORTING_PG_*):

1. write: the run's validated set (audit/<run_id>/kpi.duckdb with a passing
   gate verdict, or its published copy published/runs/<run_id>/kpi.duckdb) is
   copied exactly into the staging schema `published__staging`: the three
   kpi_ marts with the types of kpis.md (NUMERIC(18,2), NUMERIC(12,6), BIGINT,
   DATE) and run_info;
2. audit: the same GX suites run on the staging tables in PostgreSQL
   (postgres/gate.py); a failure leaves the published schema untouched;
3. publish: ONE transaction replaces the rows of all four tables of schema
   `published` (DELETE + INSERT; a table is re-created first only when its
   columns changed). PostgreSQL's MVCC gives every reader the old complete
   set or the new complete set; readers take no lock that publishing waits
   for, and publishing takes none they wait for (except on a contract change,
   which re-creates tables). The same transaction records the set in the
   history schema `published_history` (postgres/history.py), so the current
   set and its history always agree.

The role `bi_reader` (production.init_warehouse) may read schemas `published`
and `published_history` and nothing else; regional roles read their regions'
rows of them (row-level security, postgres/access.py, re-applied by the switch). Publishers are serialised by an
advisory lock. Publishing a run that is already current changes nothing.

Exit status: 0 published (or already current), 1 withheld or failed, 2 usage error.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import tenacity

from program_reporting.core import settings
from program_reporting.core.published import published_runs
from program_reporting.core.settings import Paths
from program_reporting.core.settings import paths as default_paths
from program_reporting.postgres import access, history
from program_reporting.postgres import connection as pg
from program_reporting.validation import gate
from program_reporting.validation.candidate import GateBlocked, PublishError, check_run_id, checked_candidate

log = logging.getLogger(__name__)

TABLES = gate.MART_TABLES  # kpi_program_daily, kpi_segment_daily, kpi_target_progress, run_info
STAGING_SCHEMA = f"{settings.PUBLISHED_SCHEMA}__staging"
ADVISORY_LOCK_KEY = 7_301_955_112  # "program-reporting publish": serialises publishers, never readers
SWAP_ATTEMPTS = 5
LOCK_TIMEOUT = "5s"


def enabled() -> bool:
    """Publishing to PostgreSQL is part of the run in the production profile."""
    return settings.warehouse_target() == "postgres"


@dataclass
class PgPublication:
    run_id: str
    ds: str
    published: bool
    reason: str
    rows: dict
    gate: gate.GateResult | None = None
    seconds: float = 0.0


def source_of(run_id: str, p: Paths) -> Path:
    """The validated set of a run: its audit set with a passing verdict, or its published copy."""
    check_run_id(run_id)
    if (p.audit / run_id / "kpi.duckdb").exists():
        candidate, _verdict = checked_candidate(run_id, p)  # requires a passing, unchanged verdict
        return candidate
    published = p.runs / run_id / "kpi.duckdb"
    if published.exists():
        return published
    raise PublishError(f"run {run_id}: no validated set in {p.audit / run_id} or {p.runs / run_id}")


def _run_info(source: Path) -> tuple[str, str]:
    con = duckdb.connect(str(source), read_only=True)
    try:
        rows = con.execute("SELECT run_id, CAST(ds AS VARCHAR) FROM run_info").fetchall()
    except duckdb.Error as exc:
        raise PublishError(f"{source}: cannot read run_info: {exc}") from exc
    finally:
        con.close()
    if len(rows) != 1:
        raise PublishError(f"{source}: run_info has {len(rows)} rows, expected 1")
    return rows[0]


def _require_serving_schema(cur) -> None:
    if not pg.schema_exists(cur, settings.PUBLISHED_SCHEMA):
        raise pg.PgError(
            f"schema {settings.PUBLISHED_SCHEMA!r} is missing in database "
            f"{settings.postgres().database!r}: run `program-reporting init-warehouse`"
        )
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.BI_READER_ROLE,))
    if cur.fetchone() is None:
        raise pg.PgError(f"role {settings.BI_READER_ROLE!r} is missing: run `program-reporting init-warehouse`")
    if not history.schema_ready(cur):
        raise pg.PgError(
            f"{history.HISTORY_SCHEMA}.{history.RUNS} is missing in database "
            f"{settings.postgres().database!r}: run `program-reporting init-warehouse`"
        )


def current_run(cur) -> str | None:
    """The run id of the set in the published schema (None before the first publication)."""
    if not pg.pg_columns(cur, settings.PUBLISHED_SCHEMA, "run_info"):
        return None
    from psycopg2 import sql

    cur.execute(sql.SQL("SELECT run_id FROM {}").format(sql.Identifier(settings.PUBLISHED_SCHEMA, "run_info")))
    rows = cur.fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _stage(conn, source: Path, tmp_dir: Path) -> dict:
    """Copy the set into a fresh staging schema (committed; invisible to bi_reader)."""
    from psycopg2 import sql

    staging = sql.Identifier(STAGING_SCHEMA)
    rows = {}
    duck = duckdb.connect(config=settings.duckdb_config())
    try:
        duck.execute(f"ATTACH '{str(source).replace(chr(39), chr(39) * 2)}' AS src (READ_ONLY)")
        present = {
            r[0]
            for r in duck.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'src'"
            ).fetchall()
        }
        missing = [t for t in TABLES if t not in present]
        if missing:
            raise PublishError(f"{source} lacks {', '.join(missing)}")
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(staging))  # a crashed publisher's
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(staging))
            for t in TABLES:  # names are the contract's constants, not settings text
                rows[t] = pg.copy_query_to_pg(duck, f"SELECT * FROM src.main.{t}", cur, STAGING_SCHEMA, t, tmp_dir)
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN published_at timestamptz").format(
                    sql.Identifier(STAGING_SCHEMA, "run_info")
                )
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        duck.close()
    return rows


@dataclass
class _HistoryLoad:
    """What the switch records in published_history (history.record_publication)."""

    run_id: str
    ds: str
    files_published_at: dt.datetime | None
    catch_up: Sequence[history.FilesRun]
    tmp_dir: Path | None


def _swap(conn, load: _HistoryLoad | None = None) -> None:
    """All four tables of the published schema get the staged rows, and the
    history its new run, in ONE transaction.

    A transaction that waited too long for readers (a contract change re-creates
    tables) or lost a deadlock is rolled back and tried again, SWAP_ATTEMPTS in all."""
    import psycopg2

    waited_for_readers = (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(waited_for_readers),
        stop=tenacity.stop_after_attempt(SWAP_ATTEMPTS),
        wait=tenacity.wait_incrementing(start=1, increment=1),  # 1 s, 2 s, 3 s, ...
        before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    try:
        retrying(_swap_once, conn, load)
    except waited_for_readers as exc:
        raise pg.PgError(f"could not switch the published tables after {SWAP_ATTEMPTS} attempts: {exc}") from exc


def _swap_once(conn, load: _HistoryLoad | None = None) -> None:
    from psycopg2 import sql

    pub, role = settings.PUBLISHED_SCHEMA, sql.Identifier(settings.BI_READER_ROLE)
    try:
        with conn.cursor() as cur:
            # Only a contract change (re-created table, altered history table) can wait on readers: bounded.
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
            published_at = None
            if load is not None:  # writes only published_history: no lock readers of `published` wait for
                published_at = history.record_publication(
                    cur,
                    load.run_id,
                    load.ds,
                    STAGING_SCHEMA,
                    load.files_published_at,
                    load.catch_up,
                    load.tmp_dir,
                )
            # The serving schema names the time its history gives the run.
            cur.execute(
                sql.SQL("UPDATE {} SET published_at = coalesce(%s, now())").format(
                    sql.Identifier(STAGING_SCHEMA, "run_info")
                ),
                (published_at,),
            )
            for t in TABLES:
                target, staged = sql.Identifier(pub, t), sql.Identifier(STAGING_SCHEMA, t)
                if pg.pg_columns(cur, pub, t) != pg.pg_columns(cur, STAGING_SCHEMA, t):
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
                    cur.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(target, staged))
                cur.execute(sql.SQL("DELETE FROM {}").format(target))
                cur.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(target, staged))
                cur.execute(
                    "SELECT has_table_privilege(%s, %s, 'SELECT')",
                    (settings.BI_READER_ROLE, sql.Identifier(pub, t).as_string(cur)),
                )
                if not cur.fetchone()[0]:
                    cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(target, role))
            # Row-level security on a table re-created above, or a history table created by this
            # publication, before anyone can read it (a no-op when all is in place).
            access.secure(cur)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def publish(
    run_id: str,
    paths: Paths | None = None,
    source: Path | None = None,
    pg_settings: settings.PostgresSettings | None = None,
    validate: bool = True,
    on_gate: Callable[[gate.GateResult], None] | None = None,
    before_switch: Callable[[], None] | None = None,
) -> PgPublication:
    """Copy run `run_id`'s validated set into PostgreSQL, validate it there, and
    make it the published set in one transaction. Raises PublishError (the
    published schema unchanged) when the set is not validated, GateBlocked when
    it fails the gate.

    `on_gate` gets the gate's result, passed or not, before anything is
    published: the run's report must list it even if this process dies right
    after the switch (a retry finds the run current and runs no gate).
    `before_switch` runs once the set passed, just before the switch (the write-audit-
    publish path publishes the files and the report there); if it raises, nothing
    changes in PostgreSQL.

    The switch records the set in published_history, as published at the
    files' time (published/runs/<run_id>/manifest.json) when the files hold
    it. The runs the files published before this one and PostgreSQL's history
    lacks (published while PostgreSQL was not the target) are loaded first,
    in publication order (catch-up)."""
    from psycopg2 import sql

    p = paths or default_paths()
    started = time.monotonic()
    source = Path(source) if source else source_of(run_id, p)
    info_run, ds = _run_info(source)
    if info_run != run_id:
        raise PublishError(f"{source}: run_info names run {info_run!r}, not {run_id!r}")
    p.tmp.mkdir(parents=True, exist_ok=True)

    lock = pg.connect(pg_settings)
    lock.autocommit = True
    conn = pg.connect(pg_settings)
    try:
        with lock.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            _require_serving_schema(cur)
            if current_run(cur) == run_id:
                log.info("run %s is already the published set in PostgreSQL; nothing to do", run_id)
                return PgPublication(run_id, ds, True, "already published", {}, None, time.monotonic() - started)
        rows = _stage(conn, source, p.tmp)
        log.info("run %s staged in PostgreSQL schema %s: %s", run_id, STAGING_SCHEMA, rows)
        result = None
        if validate:
            from program_reporting.postgres import gate as gate_pg

            result = gate_pg.validate_schema(run_id, ds, STAGING_SCHEMA, pg_settings=pg_settings, tmp_dir=p.tmp)
            if on_gate is not None:
                on_gate(result)
            if not result.passed:
                raise GateBlocked(f"run {run_id} was not published to PostgreSQL: {result.reason()}")
        if before_switch is not None:
            before_switch()
        load = _HistoryLoad(
            run_id,
            ds,
            history.files_published_at(run_id, p),
            published_runs(p),
            p.tmp,
        )
        _swap(conn, load)
        seconds = time.monotonic() - started
        log.info(
            "run %s (ds %s) published to PostgreSQL schema %s in %.2fs", run_id, ds, settings.PUBLISHED_SCHEMA, seconds
        )
        return PgPublication(run_id, ds, True, "published", rows, result, seconds)
    finally:
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(STAGING_SCHEMA)))
            conn.commit()
        finally:
            conn.close()
            with lock.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
            lock.close()
