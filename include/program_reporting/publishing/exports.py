"""Parquet exports of the published KPI set, for BI tools that read files.

`home/exports/parquet/<table>/` holds one Parquet file per table of the
published set. Each folder is a symbolic link to a version folder
(`home/exports/parquet/.versions/<table>-<run>/`) and is swapped with one
rename(2): a reader listing `<table>/` sees the previous export or the new
one, never a half-written or a missing folder. Old versions are removed
after the swap (files already open stay readable until closed).

All tables of one export come from the same published set: current.duckdb
is opened once, read-only, and a publish replaces it by rename(2), so the
open file stays the set it was when the export began.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import duckdb

from program_reporting.core.settings import Paths
from program_reporting.core.settings import paths as default_paths

log = logging.getLogger(__name__)

VERSIONS = ".versions"


def parquet_root(paths: Paths | None = None) -> Path:
    return (paths or default_paths()).exports / "parquet"


def published_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "select table_name from information_schema.tables "
        "where table_schema = 'main' and table_type = 'BASE TABLE' order by table_name"
    ).fetchall()
    return [r[0] for r in rows]


def _open_published(p: Paths) -> tuple[duckdb.DuckDBPyConnection, Path]:
    current = p.current_db
    if not current.exists():
        raise FileNotFoundError(f"nothing published yet: {current} does not exist")
    # Resolve current.duckdb once; the inode we open is one complete set even
    # if a publish swaps current.duckdb while we read.
    return duckdb.connect(str(current), read_only=True), current


def export_parquet(paths: Paths | None = None) -> dict:
    """Export every table of the published set; returns {table: parquet file}."""
    p = paths or default_paths()
    t0 = time.monotonic()
    root = parquet_root(p)
    versions = root / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    con, source = _open_published(p)
    tag = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    out: dict[str, str] = {}
    try:
        tables = published_tables(con)
        if not tables:
            raise RuntimeError(f"{source} holds no tables")
        staged: dict[str, Path] = {}
        for table in tables:
            target = versions / f"{table}-{tag}"
            target.mkdir()
            file = target / f"{table}.parquet"
            order = _order_by(con, table)
            con.execute(f"copy (select * from \"{table}\"{order}) to '{file}' (format parquet, compression zstd)")
            staged[table] = target
    finally:
        con.close()
    for table, target in staged.items():
        link = root / table
        _swap_link(link, Path(VERSIONS) / target.name)
        out[table] = str(link / f"{table}.parquet")
    _prune(root, keep={t.name for t in staged.values()})
    log.info("exported %d tables of %s to %s (%.1f s)", len(staged), source, root, time.monotonic() - t0)
    return out


def _order_by(con: duckdb.DuckDBPyConnection, table: str) -> str:
    cols = [
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns where table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
    ]
    keys = [c for c in ("program_code", "as_of_date", "region", "business_type", "size_class", "metric") if c in cols]
    return (" order by " + ", ".join(f'"{k}"' for k in keys)) if keys else ""


def _swap_link(link: Path, target: Path) -> None:
    """Point `link` at `target` atomically (a new symlink renamed over the old)."""
    if link.exists() and not link.is_symlink():
        # An export folder from an older layout: move it aside once.
        shutil.rmtree(link)
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, link)


def _prune(root: Path, keep: set[str]) -> None:
    for version in (root / VERSIONS).iterdir():
        if version.name not in keep:
            shutil.rmtree(version, ignore_errors=True)
