"""The build log: what each build of the warehouse saw, kept in dbt's own
target database (DuckDB's warehouse.duckdb, PostgreSQL on the `postgres`
target, or the target schema of the `spark` target) beside the models, where dbt's restatement plan reads it as data.

- `_build_landings`: every raw partition's reconciliation record, verbatim,
  written just before dbt runs and emptied after (a hand-run dbt build finds
  none and restates everything);
- `_build_log`: one row per build (run id, business date, the plan's
  restate_from and loaded_through, full refresh or not, when, succeeded);
- `_build_deliveries`: the version of every delivery partition that the last
  successful build saw, copied from the model int_build_deliveries.

dbt decides the plan (int_build_plan); this module passes it those records
and records a build's outcome, reads the plan back for the build's summary,
and says whether an earlier build succeeded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb

from program_reporting.core import settings
from program_reporting.core.settings import SOURCES, Paths

BUILD_LANDINGS = "_build_landings"
BUILD_LOG = "_build_log"
BUILD_DELIVERIES = "_build_deliveries"
PLAN = "int_build_plan"
DELIVERIES = "int_build_deliveries"
PLAN_COLUMNS = (
    "full_refresh",
    "restate_from",
    "reload_from",
    "reports_reload_from",
    "append_from",
    "append_since",
    "reports_append_from",
    "reports_append_since",
    "new_rows_since",
    "loaded_through_before",
    "line_passes",
    "changed_deliveries",
    "loaded_through",
)
# a warehouse to build incrementally has these (else the build is a full refresh)
_INCREMENTAL_BASE = {BUILD_LOG, BUILD_DELIVERIES, "int_credit_line_states", "stg_merchants"}


class _Target:
    """A connection to dbt's target database; SQL is written with `?` parameters."""

    def __init__(self, conn: Any, engine: str):
        self.conn, self.engine = conn, engine

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.engine == "postgres" else text

    def rows(self, text: str, params: Sequence = ()) -> list[tuple]:
        if self.engine == "spark":
            from program_reporting.warehouse.spark import python_value

            return [tuple(python_value(v) for v in r) for r in self.conn.sql(text, args=list(params)).collect()]
        if self.engine == "postgres":
            with self.conn.cursor() as cur:
                cur.execute(self._sql(text), tuple(params))
                return cur.fetchall()
        return self.conn.execute(text, list(params)).fetchall()

    def execute(self, text: str, params: Sequence = ()) -> None:
        if self.engine == "spark":
            self.conn.sql(text, args=list(params)).collect()
        elif self.engine == "postgres":
            with self.conn.cursor() as cur:
                cur.execute(self._sql(text), tuple(params))
        else:
            self.conn.execute(text, list(params))

    def executemany(self, text: str, rows: Sequence[Sequence]) -> None:
        if not rows:
            return
        if self.engine == "spark":
            raise NotImplementedError("on Spark, insert a frame (_Target.insert_rows)")
        if self.engine == "postgres":
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(text), [tuple(r) for r in rows])
        else:
            self.conn.executemany(text, [list(r) for r in rows])

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
        """Rows of text into `table` (every engine; on Spark one frame, not a statement per row)."""
        if self.engine != "spark":
            marks = ", ".join("?" for _ in columns)
            self.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            return
        if rows:
            frame = self.conn.createDataFrame(
                [tuple(r) for r in rows], schema=", ".join(f"{c} string" for c in columns)
            )
            frame.write.insertInto(table)

    def clear(self, table: str) -> None:
        self.execute(f"TRUNCATE TABLE {table}" if self.engine == "spark" else f"DELETE FROM {table}")

    def tables(self) -> set[str]:
        if self.engine == "spark":
            return {
                r.tableName for r in self.conn.sql(f"SHOW TABLES IN {self.conn.catalog.currentDatabase()}").collect()
            }
        return {
            r[0]
            for r in self.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        }


@contextlib.contextmanager
def _target(paths: Paths, read_only: bool = False) -> Iterator[_Target | None]:
    """dbt's target database (None: a DuckDB warehouse not created yet, when only reading)."""
    if settings.dbt_target() == "spark":
        from program_reporting.warehouse import spark

        if read_only and not (paths.spark_warehouse / "metastore_db").exists():
            yield None
            return
        session = spark.session(paths)
        session.sql(f"CREATE DATABASE IF NOT EXISTS {spark.schema()}")
        session.catalog.setCurrentDatabase(spark.schema())
        yield _Target(session, "spark")  # no transactions: each statement stands alone
        return
    if settings.dbt_target() == "postgres":
        import psycopg2

        conn = psycopg2.connect(**settings.postgres().dsn(), application_name="program-reporting", connect_timeout=10)
        try:
            yield _Target(conn, "postgres")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()
        return
    if read_only and not paths.warehouse_db.exists():
        yield None
        return
    con = duckdb.connect(str(paths.warehouse_db), read_only=read_only)
    try:
        if read_only:
            yield _Target(con, "duckdb")
            return
        con.execute("BEGIN")
        try:
            yield _Target(con, "duckdb")
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
    finally:
        con.close()


# the same tables as dbt's hook create_build_log (a hand-run dbt build makes them there)
_TABLES = (
    f"CREATE TABLE IF NOT EXISTS {BUILD_LOG} (run_id VARCHAR, ds DATE, restate_from DATE, full_refresh BOOLEAN, "
    "loaded_through DATE, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, succeeded BOOLEAN)",
    f"CREATE TABLE IF NOT EXISTS {BUILD_DELIVERIES} (source VARCHAR, ds DATE, version VARCHAR)",
    f"CREATE TABLE IF NOT EXISTS {BUILD_LANDINGS} (source VARCHAR, ds VARCHAR, record VARCHAR, files VARCHAR)",
)
_SPARK_TABLES = tuple(
    ddl.replace("VARCHAR", "STRING").replace("TIMESTAMPTZ", "TIMESTAMP") + " USING parquet" for ddl in _TABLES
)


def landings(paths: Paths) -> list[tuple[str, str, str | None, str | None]]:
    """(source, ds, record, files) of every raw partition holding a file: its
    reconciliation record's text as landing wrote it (None when there is none or it
    is not a JSON object) and, for a partition without one (written by other tools),
    its files' names, sizes and modification times, which stand in for its landing."""
    out = []
    for source in SOURCES:
        root = paths.raw / source
        if not root.is_dir():
            continue
        for part in sorted(root.glob("ds=*")):
            files = sorted(p for p in part.iterdir() if p.is_file())
            if not files:
                continue
            record = _record_text(part / "_reconciliation.json")
            stats = None if record else repr([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])
            out.append((source, part.name[3:], record, stats))
    return out


def _record_text(path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
        return text if isinstance(json.loads(text), dict) else None
    except (FileNotFoundError, ValueError):
        return None


def write_landings(paths: Paths, rows: list[tuple[str, str, str | None, str | None]]) -> None:
    """The records this build's plan reads (and the build log's tables, when missing)."""
    paths.warehouse_db.parent.mkdir(parents=True, exist_ok=True)
    with _target(paths) as db:
        for ddl in _SPARK_TABLES if db.engine == "spark" else _TABLES:
            db.execute(ddl)
        db.clear(BUILD_LANDINGS)
        db.insert_rows(BUILD_LANDINGS, ("source", "ds", "record", "files"), rows)


def previous_build_succeeded(paths: Paths) -> bool:
    """Whether the warehouse has a successful build to build on (else: a full refresh)."""
    with _target(paths, read_only=True) as db:
        if db is None or not _INCREMENTAL_BASE <= db.tables():
            return False
        return bool(db.rows(f"SELECT count(*) FROM {BUILD_LOG} WHERE succeeded")[0][0])


def last_success(paths: Paths) -> dt.datetime | None:
    """When the last successful build finished (None: none yet)."""
    with _target(paths, read_only=True) as db:
        if db is None or BUILD_LOG not in db.tables():
            return None
        return db.rows(f"SELECT max(finished_at) FROM {BUILD_LOG} WHERE succeeded")[0][0]


def read_plan(paths: Paths) -> dict | None:
    """The plan dbt computed for the build that just ran (int_build_plan), as text values."""
    with _target(paths, read_only=True) as db:
        if db is None or PLAN not in db.tables():
            return None
        row = db.rows(f"SELECT {', '.join(PLAN_COLUMNS)} FROM {PLAN}")
    if len(row) != 1:
        return None
    plan = dict(zip(PLAN_COLUMNS, row[0], strict=True))
    for name in (
        "restate_from",
        "reload_from",
        "reports_reload_from",
        "append_from",
        "reports_append_from",
        "loaded_through_before",
        "loaded_through",
    ):
        plan[name] = None if plan[name] is None else str(plan[name])
    for name in ("append_since", "reports_append_since"):
        plan[name] = None if plan[name] is None else plan[name].astimezone(dt.UTC).isoformat()
    for name in ("line_passes", "changed_deliveries"):
        plan[name] = None if plan[name] is None else int(plan[name])
    return plan


def record(
    paths: Paths, run_id: str, ds: str, plan: dict | None, full_refresh: bool, started_at: dt.datetime, succeeded: bool
) -> None:
    """One row of _build_log; after a success, what the build saw becomes
    _build_deliveries. The records passed to dbt are emptied."""
    plan = plan or {}
    with _target(paths) as db:
        db.clear(BUILD_LANDINGS)
        db.execute(
            f"INSERT INTO {BUILD_LOG} VALUES (?, CAST(? AS DATE), CAST(? AS DATE), ?, CAST(? AS DATE), ?, now(), ?)",
            [run_id, ds, plan.get("restate_from"), full_refresh, plan.get("loaded_through"), started_at, succeeded],
        )
        if succeeded:
            # what this build has seen: the next one restates from what changed since
            db.clear(BUILD_DELIVERIES)
            db.execute(
                f"INSERT INTO {BUILD_DELIVERIES} SELECT source, ds, version FROM {DELIVERIES} WHERE version IS NOT NULL"
            )
