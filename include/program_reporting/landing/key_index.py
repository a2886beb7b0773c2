"""The landing layer's key index: what a delivery must be compared with,
without re-reading the whole history of its source.

Landing checks every delivery against the earlier deliveries in force
(event_id conflicts, report_id repeats, merchants changing program) and
against the merchants known so far (orphans). Reading every earlier raw
partition for that made a backfill quadratic in days. Instead each source
has a DuckDB file `landing_index/<source>.duckdb` holding, per raw parquet
file in force:

- credit_events, employment_reports: a 64-bit hash of the key and the
  partition's ds. A hash hit only names the partitions to compare with;
  the comparison itself still reads the real rows of those partitions (so a
  collision costs a read, never a wrong answer);
- merchants: merchant_id, program_code, updated_at and ds, the columns
  the checks use, exactly.

Table `files` lists the files in force, each with the time the index learnt
of it (`added_at`): held orphans, compared with the history once when they
were held, are compared again only with the files that came since.

The index is derived data: `sync` brings it in line with the committed raw
partitions (a file is identified by inode, size and mtime, so hard-linked
files kept by a release are not read again), and anything it cannot trust
(a different DuckDB version, whose hash() may differ, or a damaged file) is
rebuilt from the raw layer. A landing killed between its commit and the
index update therefore costs one re-read at the next sync, nothing else.
Only the holder of the source's lock (landing_store.source_lock) opens the
file.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import duckdb
import tenacity

from program_reporting.core.settings import Paths
from program_reporting.landing.rules import sql_str
from program_reporting.landing.store import committed_files, partition, source_lock

log = logging.getLogger(__name__)

HASHED_KEY = {"credit_events": "event_id", "employment_reports": "report_id"}
SCHEMA_VERSION = f"2/{duckdb.__version__}"  # hash() is only stable within one DuckDB version


def index_path(paths: Paths, source: str) -> Path:
    return paths.home / "landing_index" / f"{source}.duckdb"


def _create(con: duckdb.DuckDBPyConnection, source: str, db: str) -> None:
    con.execute(f"CREATE TABLE {db}.meta (version VARCHAR)")
    con.execute(f"INSERT INTO {db}.meta VALUES (?)", [SCHEMA_VERSION])
    con.execute(
        f"CREATE TABLE {db}.files (fid INTEGER, ds DATE, name VARCHAR, signature VARCHAR, added_at TIMESTAMPTZ)"
    )
    if source == "merchants":
        con.execute(
            f"CREATE TABLE {db}.entries (merchant_id VARCHAR, program_code VARCHAR, "
            "updated_at TIMESTAMPTZ, _ds DATE, fid INTEGER)"
        )
    else:
        con.execute(f"CREATE TABLE {db}.entries (h UBIGINT, _ds DATE, fid INTEGER)")


def attach(con: duckdb.DuckDBPyConnection, paths: Paths, source: str, db: str = "idx") -> None:
    """Attach the source's index to `con` as `db`, in line with the raw layer.
    The caller holds the source's lock."""
    path = index_path(paths, source)
    path.parent.mkdir(parents=True, exist_ok=True)

    def rebuild(state: tenacity.RetryCallState) -> None:
        log.warning("landing index %s unusable (%s): rebuilding it from the raw layer", path, state.outcome.exception())
        try:
            con.execute(f"DETACH {db}")
        except duckdb.Error:
            pass
        for f in (path, path.with_name(path.name + ".wal")):
            f.unlink(missing_ok=True)

    # Derived data is rebuilt once when unusable; a file another process holds is never rebuilt.
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, duckdb.Error) and not _locked(exc)),
        stop=tenacity.stop_after_attempt(2),
        before_sleep=rebuild,
        reraise=True,
    ):
        with attempt:
            con.execute(f"ATTACH {sql_str(str(path))} AS {db}")
            fresh = not con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ?", [db]).fetchone()[0]
            if fresh:
                _create(con, source, db)
            elif con.execute(f"SELECT version FROM {db}.meta").fetchone()[0] != SCHEMA_VERSION:
                raise duckdb.Error(f"index version differs from {SCHEMA_VERSION}")
    sync(con, paths, source, db)


def _locked(exc: duckdb.Error) -> bool:
    """Another process has the file open: never a reason to rebuild it. The
    source's lock makes that a bug of ours, to be seen, not papered over."""
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _in_force(paths: Paths, source: str, only: set[str] | None) -> dict[tuple[str, str], tuple[str, str]]:
    """(ds, file name) -> (path, signature) of the parquet files of the committed
    raw partitions (those of the dates in `only`, when given)."""
    want = {}
    for ds, files in committed_files(paths, source, only).items():
        for f in files:
            st = f.stat(follow_symlinks=False)
            want[(ds, f.name)] = (f.path, f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return want


def sync(
    con: duckdb.DuckDBPyConnection, paths: Paths, source: str, db: str = "idx", only: set[str] | None = None
) -> None:
    """Drop the entries of files no longer in force, add those of new files;
    only those of the partitions of the dates in `only`, when given (after a
    commit, which touched only them)."""
    started = time.monotonic()
    want = _in_force(paths, source, only)
    have = {
        (ds.isoformat(), name): (fid, sig)
        for fid, ds, name, sig in con.execute(f"SELECT fid, ds, name, signature FROM {db}.files").fetchall()
        if only is None or ds.isoformat() in only
    }
    gone = [fid for key, (fid, sig) in have.items() if key not in want or want[key][1] != sig]
    new = [(key, f, sig) for key, (f, sig) in want.items() if key not in have or have[key][1] != sig]
    if not gone and not new:
        return
    next_fid = (con.execute(f"SELECT max(fid) FROM {db}.files").fetchone()[0] or 0) + 1
    con.execute("BEGIN TRANSACTION")
    try:
        if gone:
            for table in ("entries", "files"):
                con.execute(f"DELETE FROM {db}.{table} WHERE list_contains(?::INTEGER[], fid)", [gone])
        for i, ((ds, name), f, sig) in enumerate(sorted(new)):
            fid = next_fid + i
            src = f"read_parquet({sql_str(str(f))})"
            if source == "merchants":
                con.execute(
                    f"INSERT INTO {db}.entries SELECT merchant_id, program_code, updated_at, "
                    f"DATE '{ds}', {fid} FROM {src}"
                )
            else:
                con.execute(
                    f"INSERT INTO {db}.entries SELECT hash({HASHED_KEY[source]}), DATE '{ds}', {fid} FROM {src}"
                )
            con.execute(f"INSERT INTO {db}.files VALUES (?, ?, ?, ?, now())", [fid, ds, name, sig])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    log.info(
        "landing index %s: %d file(s) added, %d dropped in %.2fs",
        source,
        len(new),
        len(gone),
        time.monotonic() - started,
    )


def candidate_files(
    con: duckdb.DuckDBPyConnection,
    paths: Paths,
    source: str,
    ds: str,
    keys_sql: str,
    added_after: dt.datetime | None = None,
) -> list[Path]:
    """The parquet files of partitions before `ds` holding one of the keys
    `keys_sql` selects (one column, the key): the only history the exact
    comparison must read. added_after: only files the index learnt of after
    that time (rows compared with the history once already, as held orphans
    are: only what came since can conflict with them). Entries are appended in
    fid order, so the bound on fid lets DuckDB skip the older row groups."""
    key = HASHED_KEY[source]
    since = ""
    if added_after is not None:
        first = con.execute("SELECT min(fid) FROM idx.files WHERE added_at > ?", [added_after]).fetchone()[0]
        if first is None:
            return []
        since = f" AND e.fid >= {int(first)}"
    hits = con.execute(f"""
        SELECT f.ds, f.name FROM idx.files f
        WHERE f.fid IN (SELECT DISTINCT e.fid FROM idx.entries e
                        SEMI JOIN (SELECT hash({key}) AS h FROM ({keys_sql})) k ON k.h = e.h
                        WHERE e._ds < DATE '{ds}'{since})
        ORDER BY f.ds, f.name""").fetchall()
    # the index was synced under the source's lock, which the caller still holds: these files exist
    return [partition(paths.raw, source, d.isoformat()) / name for d, name in hits]


def known_merchants(
    con: duckdb.DuckDBPyConnection, paths: Paths, upto: str, table: str = "known", among: str | None = None
) -> None:
    """Create `table` (merchant_id, program_code) in `con`: the merchants landed
    with ds <= upto, each with its program as of its latest update; only those
    that the query `among` (one column of merchant ids, in `con`) names, when
    given: a delivery needs its own merchants, not the whole register. Takes
    the merchants lock for the moment of reading (never held while it is
    waited for)."""
    only = f" AND merchant_id IN ({among})" if among else ""
    with source_lock(paths, "merchants"):
        attach(con, paths, "merchants", "midx")
        try:
            con.execute(f"""CREATE OR REPLACE TABLE {table} AS
                SELECT merchant_id, arg_max(program_code, updated_at) AS program_code
                FROM midx.entries WHERE _ds <= DATE '{upto}'{only} GROUP BY merchant_id""")
        finally:
            con.execute("DETACH midx")
