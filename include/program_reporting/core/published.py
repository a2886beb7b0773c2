"""The published sets: their tables and keys (../shared/spec/kpis.md), and their history.

The tables and keys are in one place here: staging the candidate set orders
by the keys, the gates and the PostgreSQL serving schema copy these tables,
and the history names a row by its key.

Every published set stays in published/runs/<run_id>/ (kpi.duckdb, read-only,
and manifest.json with its `published_at`). That folder is the history: a set
was current from its own publication until the next one's, so

- by run: `--run RUN_ID` reads that run's set;
- as of a time: the set current then, the latest published at or before it.

Nothing here writes: readers open the sets read-only and never wait for a
publication (publish.py only adds folders and renames current.duckdb).

Cells are compared by key: two sets' cells of the same
table, key and column differ when their values are distinct (a value against
null included). A row one set has and the other not is a row that appeared
or disappeared: every one of its cells (its key columns included) is a
change, with nothing on the other side.

It sits in core because every layer reads it: the command line (figures,
diff), the reports (restatements), PostgreSQL (its history schema)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from program_reporting.core import settings
from program_reporting.core.settings import Paths
from program_reporting.core.settings import paths as default_paths

KPI_KEYS: dict[str, tuple[str, ...]] = {
    "kpi_program_daily": ("program_code", "as_of_date"),
    "kpi_segment_daily": ("program_code", "as_of_date", "region", "business_type", "size_class"),
    "kpi_target_progress": ("program_code", "as_of_date", "metric"),
}
KPI_TABLES: tuple[str, ...] = tuple(KPI_KEYS)

# Beside the KPI tables, each set holds one row naming its run (run_id, ds, built_at).
RUN_INFO = "run_info"
SET_TABLES: tuple[str, ...] = (*KPI_TABLES, RUN_INFO)

log = logging.getLogger(__name__)


class HistoryError(LookupError):
    """The history cannot answer: no such run, nothing published by then, unknown table."""


@dataclass(frozen=True)
class PublishedRun:
    run_id: str
    ds: str
    published_at: dt.datetime  # UTC
    path: Path  # its kpi.duckdb
    superseded_at: dt.datetime | None = None  # the next publication's time; None while current

    def describe(self) -> str:
        until = f"until {self.superseded_at.isoformat()}" if self.superseded_at else "current"
        return f"run {self.run_id} (ds {self.ds}), published {self.published_at.isoformat()}, {until}"


@dataclass(frozen=True)
class CellChange:
    table: str
    key: tuple[tuple[str, str], ...]  # (column, value) of the row's key, in key order
    column: str
    old: str | None  # None: the row did not exist (or the cell was null)
    new: str | None

    @property
    def key_text(self) -> str:
        """The key as `name=value` pairs joined by `;` (diff --format csv)."""
        return ";".join(f"{name}={value}" for name, value in self.key)

    def key_value(self, column: str) -> str | None:
        return dict(self.key).get(column)


# --------------------------------------------------------------------------- the catalogue


def _parse_time(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def published_runs(paths: Paths | None = None) -> list[PublishedRun]:
    """Every published set, oldest first, each with the time the next one replaced it.

    Ordered by `published_at`; its manifest file's time breaks a tie (older
    manifests have second precision). A folder without a readable manifest was
    never published (publish.py writes it before the folder gets its name) and
    is skipped with a warning."""
    p = paths or default_paths()
    found = []
    for manifest in p.runs.glob("*/manifest.json") if p.runs.exists() else []:
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            found.append(
                (
                    (_parse_time(doc["published_at"]), manifest.stat().st_mtime_ns),
                    doc["run_id"],
                    str(doc.get("ds") or ""),
                    manifest.parent / "kpi.duckdb",
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s is unreadable; that folder is left out of the history: %s", manifest, exc)
    found.sort(key=lambda f: f[0])
    runs = []
    for i, (order, run_id, ds, path) in enumerate(found):
        superseded = found[i + 1][0][0] if i + 1 < len(found) else None
        runs.append(PublishedRun(run_id, ds, order[0], path, superseded))
    return runs


def parse_as_of(value: str) -> dt.datetime:
    """A point in time as the command line takes it: an ISO timestamp, UTC unless
    it names its offset, or a bare date, meaning the end of that day (UTC): what
    had been published by the close of that day."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        return _parse_time(text.replace(" ", "T", 1))
    except ValueError as exc:
        raise ValueError(
            f"--as-of {value!r} is neither a date (YYYY-MM-DD) nor a timestamp (YYYY-MM-DDTHH:MM[:SS][+HH:MM])"
        ) from exc


def run_as_of(moment: dt.datetime, paths: Paths | None = None) -> PublishedRun:
    """The set that was current at `moment`: the latest published at or before it."""
    runs = published_runs(paths)
    if not runs:
        raise HistoryError("nothing has been published yet")
    current = [r for r in runs if r.published_at <= moment]
    if not current:
        raise HistoryError(
            f"nothing had been published by {moment.isoformat()}: the first publication is "
            f"{runs[0].describe().replace(', current', '')}"
        )
    return current[-1]


def run_named(run_id: str, paths: Paths | None = None) -> PublishedRun:
    runs = published_runs(paths)
    for run in runs:
        if run.run_id == run_id:
            return run
    latest = f"; the latest is {runs[-1].run_id}" if runs else "; nothing has been published yet"
    raise HistoryError(f"run {run_id!r} published no set (no published/runs/{run_id}/manifest.json){latest}")


def current_run(paths: Paths | None = None) -> PublishedRun:
    runs = published_runs(paths)
    if not runs:
        raise HistoryError("nothing has been published yet")
    return runs[-1]


def previous_run(ds_run_id: str | None = None, paths: Paths | None = None) -> PublishedRun | None:
    """The newest published set other than run `ds_run_id`: what a run's publication replaces."""
    runs = [r for r in published_runs(paths) if r.run_id != ds_run_id]
    return runs[-1] if runs else None


# --------------------------------------------------------------------------- reading sets


@contextmanager
def _sets(**files: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """One in-memory DuckDB with each set attached read-only under its name."""
    con = duckdb.connect(config=settings.duckdb_config())
    try:
        for name, path in files.items():
            if not Path(path).is_file():
                raise HistoryError(f"{path}: the set is missing")
            con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS {name} (READ_ONLY)")
        yield con
    finally:
        con.close()


def check_tables(tables: Iterable[str] | None) -> tuple[str, ...]:
    chosen = tuple(tables or KPI_TABLES)
    unknown = [t for t in chosen if t not in KPI_KEYS]
    if unknown:
        raise HistoryError(f"unknown table {', '.join(unknown)}: the published tables are {', '.join(KPI_TABLES)}")
    return chosen


def _columns(con: duckdb.DuckDBPyConnection, catalog: str, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_name = ? ORDER BY ordinal_position",
            [catalog, table],
        ).fetchall()
    ]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def figures(
    run: PublishedRun,
    tables: Sequence[str] | None = None,
    program: str | None = None,
    ds: str | None = None,
) -> dict[str, tuple[list[str], list[tuple]]]:
    """The rows of each table of the run's set, as published (Python values),
    in key order, optionally only a program's and a business date's."""
    out = {}
    with _sets(published=run.path) as con:
        for table in check_tables(tables):
            columns = _columns(con, "published", table)
            where, params = [], []
            if program is not None:
                where.append("program_code = ?")
                params.append(program)
            if ds is not None:
                settings.parse_ds(ds)
                where.append("as_of_date = CAST(? AS DATE)")
                params.append(ds)
            sql = f"SELECT * FROM published.main.{table}"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY " + ", ".join(_quote(k) for k in KPI_KEYS[table])
            out[table] = (columns, con.execute(sql, params).fetchall())
    return out


# --------------------------------------------------------------------------- comparing sets


def diff_sets(
    old: Path | None,
    new: Path,
    tables: Sequence[str] | None = None,
    before: str | None = None,
    *,
    limit: int | None = None,
) -> list[CellChange]:
    """The cells that differ between two sets, per table (in KPI_TABLES order),
    key and column (in the table's column order). `old` None: every cell of
    `new` appeared. `before` (YYYY-MM-DD): only rows dated before it, the
    restatements of a run of that business date. `limit`: at most that many
    cells of each table, the first in that order (diff_counts counts them all).

    Values are compared typed (so 1.10 and 1.1 are equal decimals) and shown
    as DuckDB casts them to text."""
    changes: list[CellChange] = []
    with _compared(old, new) as con:
        for table, key, columns, changed in _table_changes(con, old is None, tables, before):
            key_list = ", ".join(f"k{i}" for i in range(len(key)))
            capped = "" if limit is None else f" LIMIT {max(int(limit), 0)}"
            rows = con.execute(f"{changed} ORDER BY {key_list}, col_order{capped}").fetchall()
            for row in rows:
                key_values = tuple(zip(key, row[: len(key)], strict=True))
                col_order, old_value, new_value, appeared, disappeared = row[len(key) :]
                changes.append(
                    CellChange(
                        table,
                        key_values,
                        columns[col_order],
                        None if appeared else old_value,
                        None if disappeared else new_value,
                    )
                )
    return changes


@dataclass(frozen=True)
class ChangedDay:
    """How much of one table changed for one program and date (diff_counts)."""

    table: str
    program_code: str
    as_of_date: str  # YYYY-MM-DD
    rows: int  # rows with at least one changed cell (appeared and disappeared rows included)
    cells: int


def diff_counts(
    old: Path | None,
    new: Path,
    tables: Sequence[str] | None = None,
    before: str | None = None,
) -> list[ChangedDay]:
    """The cells diff_sets would list, counted per table, program and date,
    in that order: exact totals however many cells changed, without holding
    them in Python (a night of late postings at a million merchants changes
    hundreds of thousands of segment cells)."""
    out: list[ChangedDay] = []
    with _compared(old, new) as con:
        for table, key, _columns, changed in _table_changes(con, old is None, tables, before):
            key_list = ", ".join(f"k{i}" for i in range(len(key)))
            program, day = f"k{key.index('program_code')}", f"k{key.index('as_of_date')}"
            rows = con.execute(
                f"SELECT {program}, {day}, count(*), sum(cells) FROM "
                f"(SELECT {key_list}, count(*) AS cells FROM ({changed}) GROUP BY ALL) "
                f"GROUP BY ALL ORDER BY 1, 2"
            ).fetchall()
            out.extend(ChangedDay(table, p, d, int(n_rows), int(n_cells)) for p, d, n_rows, n_cells in rows)
    return out


@contextmanager
def _compared(old: Path | None, new: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The two sets attached (old_set, new_set); without an old one, an empty schema stands for it."""
    files = {"new_set": new} if old is None else {"old_set": old, "new_set": new}
    with _sets(**files) as con:
        if old is None:
            con.execute("CREATE SCHEMA empty")
        yield con


def _table_changes(
    con: duckdb.DuckDBPyConnection, no_old: bool, tables: Sequence[str] | None, before: str | None
) -> Iterator[tuple[str, tuple[str, ...], list[str], str]]:
    """Per table: (table, key, columns, a query of its changed cells). The query
    selects k0.. (the key as text), col_order (the column's place in `columns`),
    the old and new values as text, appeared and disappeared, from the temp
    table `joined`, which holds until the next table is yielded."""
    for table in check_tables(tables):
        key = KPI_KEYS[table]
        new_columns = _columns(con, "new_set", table)
        if no_old:
            con.execute(f"CREATE TABLE empty.{table} AS SELECT * FROM new_set.main.{table} LIMIT 0")
            old_ref = f"empty.{table}"
            old_columns = new_columns
        else:
            old_ref = f"old_set.main.{table}"
            old_columns = _columns(con, "old_set", table)
        columns = list(dict.fromkeys([*new_columns, *old_columns]))
        joined = " AND ".join(f"o.{_quote(k)} = n.{_quote(k)}" for k in key)
        keys = ", ".join(f"CAST(coalesce(n.{_quote(k)}, o.{_quote(k)}) AS VARCHAR) AS k{i}" for i, k in enumerate(key))
        sides = ", ".join(
            f"{side}.{_quote(c)} AS {side}{i}"
            for i, c in enumerate(columns)
            for side, present in (("o", old_columns), ("n", new_columns))
            if c in present
        )
        dated = f"WHERE coalesce(n.as_of_date, o.as_of_date) < DATE '{settings.parse_ds(before)}'" if before else ""
        # joined once; then one pass per column over the rows that differ at all
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE joined AS SELECT {keys}, "
            f"o.{_quote(key[0])} IS NULL AS appeared, n.{_quote(key[0])} IS NULL AS disappeared, {sides} "
            f"FROM {old_ref} AS o FULL OUTER JOIN new_set.main.{table} AS n ON {joined} {dated}"
        )
        key_list = ", ".join(f"k{i}" for i in range(len(key)))
        per_column = []
        for i, c in enumerate(columns):
            o = f"o{i}" if c in old_columns else "NULL"
            n = f"n{i}" if c in new_columns else "NULL"
            per_column.append(
                f"SELECT {key_list}, {i} AS col_order, CAST({o} AS VARCHAR) AS old_value, "
                f"CAST({n} AS VARCHAR) AS new_value, appeared, disappeared FROM joined "
                f"WHERE appeared OR disappeared OR {o} IS DISTINCT FROM {n}"
            )
        yield table, key, columns, " UNION ALL ".join(per_column)


def diff_runs(run_a: PublishedRun, run_b: PublishedRun, tables: Sequence[str] | None = None) -> list[CellChange]:
    """What changed from run A's published set to run B's."""
    return diff_sets(run_a.path, run_b.path, tables)
