"""The raw layer in PostgreSQL, for the dbt `postgres` target.

The DuckDB target reads the landed parquet partitions directly (the sources'
`external_location`); dbt-postgres reads the source tables `raw.merchants`,
`raw.credit_events`, `raw.employment_reports` and `raw.partitions` (the file
list of every raw partition). `load_raw()` replaces them, exactly (decimal
text through COPY), in one transaction, from home/raw/. The restricted layer
(personal data) is never loaded.

  program-reporting load-raw-pg
"""

from __future__ import annotations

import logging
import time

import duckdb

from program_reporting.core import settings
from program_reporting.core.settings import SOURCES, Paths
from program_reporting.core.settings import paths as default_paths
from program_reporting.postgres import connection as pg

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"  # the dbt source name; dbt-postgres resolves source('raw', t) to raw.t


def _listing(files) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def load_raw(paths: Paths | None = None, pg_settings: settings.PostgresSettings | None = None) -> dict[str, int]:
    """Replace the raw tables in PostgreSQL with the landed partitions. Returns row counts."""
    from psycopg2 import sql

    p = paths or default_paths()
    started = time.monotonic()
    counts: dict[str, int] = {}
    duck = duckdb.connect(config=settings.duckdb_config())
    conn = pg.connect(pg_settings)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(RAW_SCHEMA)))
            for source in SOURCES:
                files = sorted(p.raw.glob(f"{source}/ds=*/*.parquet"))
                if not files:
                    raise pg.PgError(f"{p.raw / source}: no landed partitions to load")
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(RAW_SCHEMA, source)))
                counts[source] = pg.copy_query_to_pg(
                    duck,
                    f"SELECT * FROM read_parquet({_listing(files)}, union_by_name = true, hive_partitioning = false)",
                    cur,
                    RAW_SCHEMA,
                    source,
                    p.tmp if p.tmp.exists() else None,
                )
            # The same file list the DuckDB source globs (home/raw/<source>/ds=<ds>/<file>).
            table = sql.Identifier(RAW_SCHEMA, "partitions")
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            cur.execute(sql.SQL("CREATE TABLE {} (file text)").format(table))
            files = sorted(f for f in p.raw.glob("*/ds=*/*") if f.is_file())
            cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s)").format(table), [(str(f),) for f in files])
            counts["partitions"] = len(files)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
        duck.close()
    log.info("raw layer loaded into PostgreSQL schema %s in %.1fs: %s", RAW_SCHEMA, time.monotonic() - started, counts)
    return counts
