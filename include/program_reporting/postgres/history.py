"""Every set PostgreSQL served, kept: the schema `published_history`.

The serving schema `published` holds only the current set. Its history sits
beside it, readable by `bi_reader` (never writable), and is loaded in the
SAME transaction as each switch of the serving schema (serving._swap_once),
so the two always agree:

- `published_history.runs`: one row per publication, in order: `run_seq`
  (1, 2, 3, ...), `run_id`, `ds`, `published_at` = `valid_from` (the files'
  publication time, published/runs/<run_id>/manifest.json, which the
  write-audit-publish path writes before PostgreSQL switches; the switch's
  own time when the files have no later one), `valid_to` (the next run's
  `published_at`; null while current), `caught_up` (loaded from the files by
  a later publication, see below) and `kpi_columns` (each table's published
  columns in that run, in order).
- one table per KPI table (core/published.py), same name: the published
  columns plus `from_run_seq` and `to_run_seq`, the runs [from, to) in which
  that row version was published. Slowly changing: a run inserts a version
  when it publishes a row that is new or differs in any column from the open
  version of its key, and closes the open version (to_run_seq = its run_seq)
  when it changes or drops that row; `to_run_seq` null = still published.
  Indexes: key + from_run_seq (unique), key of the open versions (unique),
  and a GiST index on `int8range(from_run_seq, to_run_seq)` for "in force
  in run N".
- views `<table>_by_run`: run_seq, run_id and the table's columns, one row per
  run a version was in force: a run's full set is `WHERE run_id = ...`.
- function `published_history.run_as_of(timestamptz)`: the run_seq that was
  current at that moment (null before the first publication).

Loading only writes `published_history` and takes no lock that readers of
`published` wait for; readers of the history never wait either, except when a
contract change adds or retypes a column (then its table and view are altered,
bounded by the switch's lock_timeout). A run already current is not loaded
again. A run republished later (a rollback) gets a new run_seq.

Runs published to the files while PostgreSQL was not the target are caught
up: the write-audit-publish path hands the files' history to the switch, and
the published runs after the last one PostgreSQL recorded and before the one
being switched are loaded first, from published/runs/<run_id>/kpi.duckdb, in
publication order (`caught_up` true). `publish-pg` by hand catches nothing
up; a gap before a later recorded run stays a gap."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb

from program_reporting.core import settings
from program_reporting.core.published import KPI_KEYS, KPI_TABLES
from program_reporting.core.settings import Paths
from program_reporting.postgres import connection as pg

log = logging.getLogger(__name__)

HISTORY_SCHEMA = settings.PUBLISHED_HISTORY_SCHEMA
RUNS = "runs"
FROM_RUN, TO_RUN = "from_run_seq", "to_run_seq"
CATCH_UP_PREFIX = "catch_up_"  # temporary tables a caught-up run's set is copied into


class HistoryLookupError(LookupError):
    """The history cannot answer: no such run, nothing published by then, unknown table."""


class FilesRun(Protocol):
    """A set published to the files, as core.published.published_runs lists it."""

    @property
    def run_id(self) -> str: ...

    @property
    def published_at(self) -> dt.datetime: ...

    @property
    def path(self) -> Path: ...


@dataclass(frozen=True)
class HistoryRun:
    run_seq: int
    run_id: str
    ds: str
    published_at: dt.datetime
    valid_to: dt.datetime | None
    caught_up: bool
    kpi_columns: dict[str, list[str]]


# --------------------------------------------------------------------------- schema


def create_schema(cur) -> None:
    """The schema, its runs table and run_as_of() (init-warehouse; idempotent).
    The KPI history tables are created by the first publication, with the
    columns of the set it publishes."""
    from psycopg2 import sql

    schema = sql.Identifier(HISTORY_SCHEMA)
    runs = sql.Identifier(HISTORY_SCHEMA, RUNS)
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    cur.execute(
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                 run_seq bigint PRIMARY KEY,
                 run_id text NOT NULL,
                 ds date NOT NULL,
                 published_at timestamptz NOT NULL,
                 valid_from timestamptz NOT NULL,
                 valid_to timestamptz,
                 caught_up boolean NOT NULL DEFAULT false,
                 kpi_columns jsonb NOT NULL,
                 loaded_at timestamptz NOT NULL DEFAULT now(),
                 CHECK (valid_from = published_at),
                 CHECK (valid_to IS NULL OR valid_to >= valid_from))"""
        ).format(runs)
    )
    cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS runs_run_id ON {} (run_id)").format(runs))
    cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS runs_published_at ON {} (published_at)").format(runs))
    # published_at never decreases with run_seq (record_publication), so the latest run
    # published by a moment is the highest run_seq among those.
    cur.execute(
        sql.SQL(
            """CREATE OR REPLACE FUNCTION {}(moment timestamptz) RETURNS bigint
               LANGUAGE sql STABLE AS $$ SELECT max(run_seq) FROM {} WHERE published_at <= moment $$"""
        ).format(sql.Identifier(HISTORY_SCHEMA, "run_as_of"), runs)
    )


def schema_ready(cur) -> bool:
    return bool(_types(cur, HISTORY_SCHEMA, RUNS))


def _types(cur, schema: str, table: str) -> list[tuple[str, str]]:
    """[(column, PostgreSQL type as declared)] of a table, in order; [] when it does not exist.
    Works for temporary tables (schema "pg_temp") too."""
    from psycopg2 import sql

    cur.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, table).as_string(cur),))
    oid = cur.fetchone()[0]
    if oid is None:
        return []
    cur.execute(
        """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
           WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
        (sql.Identifier(schema, table).as_string(cur),),
    )
    return cur.fetchall()


def _ensure_table(cur, table: str, columns: list[tuple[str, str]]) -> None:
    """The history table of a KPI table, holding (at least) `columns` with their
    types, and its view. A new column is added (null in older versions), a
    column whose type changed is retyped; a dropped one stays (null from then on)."""
    from psycopg2 import sql

    history = sql.Identifier(HISTORY_SCHEMA, table)
    view = sql.Identifier(HISTORY_SCHEMA, f"{table}_by_run")
    key = KPI_KEYS[table]
    existing = dict(_types(cur, HISTORY_SCHEMA, table))
    if not existing:
        cur.execute(
            sql.SQL("CREATE TABLE {} ({} bigint NOT NULL, {} bigint, {}, CHECK ({} IS NULL OR {} > {}))").format(
                history,
                sql.Identifier(FROM_RUN),
                sql.Identifier(TO_RUN),
                sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns),
                sql.Identifier(TO_RUN),
                sql.Identifier(TO_RUN),
                sql.Identifier(FROM_RUN),
            )
        )
        keys = sql.SQL(", ").join(map(sql.Identifier, key))
        cur.execute(
            sql.SQL("CREATE UNIQUE INDEX {} ON {} ({}, {})").format(
                sql.Identifier(f"{table}_key_from"), history, keys, sql.Identifier(FROM_RUN)
            )
        )
        # At most one open version per key: the load closes before it inserts.
        cur.execute(
            sql.SQL("CREATE UNIQUE INDEX {} ON {} ({}) WHERE {} IS NULL").format(
                sql.Identifier(f"{table}_open_key"), history, keys, sql.Identifier(TO_RUN)
            )
        )
        cur.execute(
            sql.SQL("CREATE INDEX {} ON {} USING gist (int8range({}, {}))").format(
                sql.Identifier(f"{table}_runs"), history, sql.Identifier(FROM_RUN), sql.Identifier(TO_RUN)
            )
        )
    else:
        added = [(c, t) for c, t in columns if c not in existing]
        retyped = [(c, t) for c, t in columns if c in existing and existing[c] != t]
        if not added and not retyped:
            return
        log.warning(
            "the published columns of %s changed (added %s, retyped %s): altering %s.%s",
            table,
            [c for c, _ in added],
            [c for c, _ in retyped],
            HISTORY_SCHEMA,
            table,
        )
        cur.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))  # it depends on the columns' types
        for c, t in added:
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(history, sql.Identifier(c), sql.SQL(t)))
        for c, t in retyped:
            cur.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}").format(
                    history, sql.Identifier(c), sql.SQL(t), sql.Identifier(c), sql.SQL(t)
                )
            )
    published = [c for c, _ in _types(cur, HISTORY_SCHEMA, table) if c not in (FROM_RUN, TO_RUN)]
    # Written with the range operator so that "the set of run N" uses the GiST index;
    # security_invoker so that the history table's row-level security (postgres/access.py)
    # applies to the view's reader, not to its owner.
    cur.execute(
        sql.SQL(
            "CREATE VIEW {} WITH (security_invoker = true) AS SELECT r.run_seq, r.run_id, {} FROM {} AS r "
            "JOIN {} AS h ON int8range(h.{}, h.{}) @> r.run_seq"
        ).format(
            view,
            sql.SQL(", ").join(sql.SQL("h.{}").format(sql.Identifier(c)) for c in published),
            sql.Identifier(HISTORY_SCHEMA, RUNS),
            history,
            sql.Identifier(FROM_RUN),
            sql.Identifier(TO_RUN),
        )
    )
    for relation in (history, view):
        _grant_select(cur, relation)


def _grant_select(cur, relation) -> None:
    """bi_reader reads what the publisher creates (init-warehouse's default privileges
    cover tables created by its own role; a publisher running as another role is covered here)."""
    from psycopg2 import sql

    cur.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", (settings.BI_READER_ROLE, relation.as_string(cur)))
    if not cur.fetchone()[0]:
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(relation, sql.Identifier(settings.BI_READER_ROLE)))


# --------------------------------------------------------------------------- loading


def files_published_at(run_id: str, paths: Paths) -> dt.datetime | None:
    """When the files published run `run_id` (its manifest's published_at, UTC), or None."""
    manifest = paths.runs / run_id / "manifest.json"
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        if doc.get("run_id") != run_id:
            return None
        moment = dt.datetime.fromisoformat(doc["published_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _last_run(cur) -> tuple[int, str, dt.datetime] | None:
    from psycopg2 import sql

    cur.execute(
        sql.SQL("SELECT run_seq, run_id, published_at FROM {} ORDER BY run_seq DESC LIMIT 1").format(
            sql.Identifier(HISTORY_SCHEMA, RUNS)
        )
    )
    return cur.fetchone()


def runs_to_catch_up(
    files_runs: Sequence[FilesRun], run_id: str, last: tuple[int, str, dt.datetime] | None
) -> list[FilesRun]:
    """The files' published runs (oldest first) PostgreSQL's history lacks before
    run `run_id`: those after the last run it recorded, up to run_id's own
    publication (exclusive)."""
    before = list(files_runs)
    for i in range(len(before) - 1, -1, -1):
        if before[i].run_id == run_id:
            before = before[:i]
            break
    if last is None:
        return before
    _seq, last_run_id, last_published_at = last
    for i in range(len(before) - 1, -1, -1):
        if before[i].run_id == last_run_id:
            return before[i + 1 :]
    # The last recorded run is not among the files' (published to PostgreSQL alone).
    return [r for r in before if r.published_at > last_published_at]


def record_publication(
    cur,
    run_id: str,
    ds: str,
    staged_schema: str,
    files_published_at: dt.datetime | None,
    catch_up: Sequence[FilesRun] = (),
    tmp_dir: Path | None = None,
) -> dt.datetime:
    """Record in published_history the set staged in `staged_schema` as run
    `run_id`'s publication, after the runs of `catch_up` PostgreSQL has not
    recorded (runs_to_catch_up). Returns its published_at. Runs in the caller's
    transaction (the switch); nothing is committed here."""
    last = _last_run(cur)
    if last is not None and last[1] == run_id:
        log.info("run %s is already the latest run of %s; not loaded again", run_id, HISTORY_SCHEMA)
        return last[2]
    for run in runs_to_catch_up(catch_up, run_id, last):
        last = _catch_up(cur, run, last, tmp_dir)
    cur.execute("SELECT now()")
    switched_at = cur.fetchone()[0]
    # The files' time when the files published this set after the last recorded one
    # (the write-audit-publish path); else the switch's: published_at never goes back.
    if files_published_at is not None and (last is None or files_published_at >= last[2]):
        published_at = files_published_at
    else:
        published_at = max(switched_at, last[2]) if last is not None else switched_at
    tables = {t: t for t in KPI_TABLES}
    _record(cur, (last[0] if last else 0) + 1, run_id, ds, published_at, False, staged_schema, tables)
    return published_at


def _catch_up(cur, run: FilesRun, last, tmp_dir: Path | None) -> tuple[int, str, dt.datetime]:
    """Load a run the files published while PostgreSQL was not the target."""
    from psycopg2 import sql

    duck = duckdb.connect(config=settings.duckdb_config())
    try:
        duck.execute(f"ATTACH '{str(run.path).replace(chr(39), chr(39) * 2)}' AS src (READ_ONLY)")
        run_id, ds = duck.execute("SELECT run_id, CAST(ds AS VARCHAR) FROM src.main.run_info").fetchone()
        tables = {}
        for t in KPI_TABLES:  # names are the contract's constants
            tables[t] = CATCH_UP_PREFIX + t
            pg.copy_query_to_pg(duck, f"SELECT * FROM src.main.{t}", cur, "pg_temp", tables[t], tmp_dir)
    finally:
        duck.close()
    if run_id != run.run_id:
        raise pg.PgError(f"{run.path}: run_info names run {run_id!r}, not {run.run_id!r}")
    published_at = run.published_at if last is None else max(run.published_at, last[2])
    run_seq = (last[0] if last else 0) + 1
    _record(cur, run_seq, run_id, ds, published_at, True, "pg_temp", tables)
    for name in tables.values():
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier("pg_temp", name)))
    log.info("run %s (published to the files only) caught up in %s as run_seq %s", run_id, HISTORY_SCHEMA, run_seq)
    return run_seq, run_id, published_at


def _record(
    cur,
    run_seq: int,
    run_id: str,
    ds: str,
    published_at: dt.datetime,
    caught_up: bool,
    source_schema: str,
    source_tables: dict[str, str],
) -> None:
    """Close the versions run `run_seq` no longer publishes as they are, insert
    the rows it publishes anew, and add it to the runs."""
    from psycopg2 import sql

    kpi_columns = {}
    for table in KPI_TABLES:
        source = sql.Identifier(source_schema, source_tables[table])
        columns = _types(cur, source_schema, source_tables[table])
        if not columns:
            raise pg.PgError(f"{source_schema}.{source_tables[table]} does not exist: nothing to record")
        _ensure_table(cur, table, columns)
        names = [c for c, _ in columns]
        kpi_columns[table] = names
        history = sql.Identifier(HISTORY_SCHEMA, table)
        same_key = sql.SQL(" AND ").join(sql.SQL("s.{c} = h.{c}").format(c=sql.Identifier(k)) for k in KPI_KEYS[table])
        # A column the set does not have counts as null in it.
        same_cells = sql.SQL(" AND ").join(
            sql.SQL("h.{c} IS NOT DISTINCT FROM s.{c}").format(c=sql.Identifier(c))
            if c in names
            else sql.SQL("h.{} IS NULL").format(sql.Identifier(c))
            for c, _ in _types(cur, HISTORY_SCHEMA, table)
            if c not in (FROM_RUN, TO_RUN)
        )
        cur.execute(
            sql.SQL(
                "UPDATE {h} AS h SET {to} = %s WHERE h.{to} IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM {s} AS s WHERE {same_key} AND {same_cells})"
            ).format(h=history, to=sql.Identifier(TO_RUN), s=source, same_key=same_key, same_cells=same_cells),
            (run_seq,),
        )
        closed = cur.rowcount
        cur.execute(
            sql.SQL(
                "INSERT INTO {h} ({from_}, {cols}) SELECT %s, {s_cols} FROM {s} AS s "
                "WHERE NOT EXISTS (SELECT 1 FROM {h} AS h WHERE h.{to} IS NULL AND {same_key})"
            ).format(
                h=history,
                from_=sql.Identifier(FROM_RUN),
                cols=sql.SQL(", ").join(map(sql.Identifier, names)),
                s_cols=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in names),
                s=source,
                to=sql.Identifier(TO_RUN),
                same_key=same_key,
            ),
            (run_seq,),
        )
        log.info("%s.%s, run %s: %s versions closed, %s inserted", HISTORY_SCHEMA, table, run_id, closed, cur.rowcount)
    runs = sql.Identifier(HISTORY_SCHEMA, RUNS)
    cur.execute(sql.SQL("UPDATE {} SET valid_to = %s WHERE valid_to IS NULL").format(runs), (published_at,))
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (run_seq, run_id, ds, published_at, valid_from, caught_up, kpi_columns) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)"
        ).format(runs),
        (run_seq, run_id, ds, published_at, published_at, caught_up, json.dumps(kpi_columns)),
    )


# --------------------------------------------------------------------------- reading


def _history_run(row) -> HistoryRun:
    run_seq, run_id, ds, published_at, valid_to, caught_up, kpi_columns = row
    return HistoryRun(run_seq, run_id, ds.isoformat(), published_at, valid_to, caught_up, kpi_columns)


_RUN_COLUMNS = "run_seq, run_id, ds, published_at, valid_to, caught_up, kpi_columns"


def runs(pg_settings: settings.PostgresSettings | None = None) -> list[HistoryRun]:
    """Every run PostgreSQL's history recorded, oldest first."""
    from psycopg2 import sql

    conn = pg.connect(pg_settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(f"SELECT {_RUN_COLUMNS} FROM {{}} ORDER BY run_seq").format(
                    sql.Identifier(HISTORY_SCHEMA, RUNS)
                )
            )
            return [_history_run(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _find_run(cur, run_id: str | None, as_of: dt.datetime | None) -> HistoryRun:
    from psycopg2 import sql

    if (run_id is None) == (as_of is None):
        raise ValueError("give a run id or an as-of time, one of them")
    runs_table = sql.Identifier(HISTORY_SCHEMA, RUNS)
    if run_id is not None:
        # A run republished later (a rollback) is recorded twice, with the same set.
        cur.execute(
            sql.SQL(f"SELECT {_RUN_COLUMNS} FROM {{}} WHERE run_id = %s ORDER BY run_seq DESC LIMIT 1").format(
                runs_table
            ),
            (run_id,),
        )
        row = cur.fetchone()
        if row is None:
            raise HistoryLookupError(f"run {run_id!r} is not in PostgreSQL's {HISTORY_SCHEMA}.{RUNS}")
        return _history_run(row)
    cur.execute(
        sql.SQL(f"SELECT {_RUN_COLUMNS} FROM {{}} WHERE run_seq = {{}}(%s)").format(
            runs_table, sql.Identifier(HISTORY_SCHEMA, "run_as_of")
        ),
        (_utc(as_of),),
    )
    row = cur.fetchone()
    if row is None:
        cur.execute(sql.SQL("SELECT min(published_at) FROM {}").format(runs_table))
        first = cur.fetchone()[0]
        if first is None:
            raise HistoryLookupError(f"nothing has been published to PostgreSQL ({HISTORY_SCHEMA} is empty)")
        raise HistoryLookupError(
            f"nothing had been published to PostgreSQL by {_utc(as_of).isoformat()}: "
            f"the first publication is {first.isoformat()}"
        )
    return _history_run(row)


def find_run(
    run_id: str | None = None,
    as_of: dt.datetime | None = None,
    pg_settings: settings.PostgresSettings | None = None,
) -> HistoryRun:
    """The run named, or the one current at `as_of` (naive: UTC), in PostgreSQL's history."""
    conn = pg.connect(pg_settings)
    try:
        with conn.cursor() as cur:
            return _find_run(cur, run_id, as_of)
    finally:
        conn.close()


def figures(
    table: str,
    run_id: str | None = None,
    as_of: dt.datetime | None = None,
    program: str | None = None,
    ds: str | None = None,
    pg_settings: settings.PostgresSettings | None = None,
) -> tuple[list[str], list[tuple]]:
    """One table of a run's published set, or of the set current at `as_of`
    (naive: UTC), from PostgreSQL's history: (its columns, its rows in key
    order), optionally only a program's and a business date's: what
    core.published.figures reads from the files for that run."""
    from psycopg2 import sql

    if table not in KPI_KEYS:
        raise HistoryLookupError(f"unknown table {table}: the published tables are {', '.join(KPI_TABLES)}")
    conn = pg.connect(pg_settings)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)  # the run and its rows from one snapshot
    try:
        with conn.cursor() as cur:
            run = _find_run(cur, run_id, as_of)
            columns = run.kpi_columns[table]
            where = [
                sql.SQL("int8range({}, {}) @> %s::bigint").format(sql.Identifier(FROM_RUN), sql.Identifier(TO_RUN))
            ]
            params: list = [run.run_seq]
            if program is not None:
                where.append(sql.SQL("program_code = %s"))
                params.append(program)
            if ds is not None:
                where.append(sql.SQL("as_of_date = %s"))
                params.append(settings.parse_ds(ds))
            cur.execute(
                sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.Identifier(HISTORY_SCHEMA, table),
                    sql.SQL(" AND ").join(where),
                    sql.SQL(", ").join(map(sql.Identifier, KPI_KEYS[table])),
                ),
                params,
            )
            rows = cur.fetchall()
        conn.rollback()
        return columns, rows
    finally:
        conn.close()
