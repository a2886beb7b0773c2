"""PostgreSQL plumbing for the production profile: connections and exact
table copies between DuckDB and PostgreSQL.

Rules kept here, in one place:
- connections take keyword arguments from `settings.postgres()`, never a DSN
  or URL pasted together from settings text; SQLAlchemy URLs (for GX) are
  built by `sqlalchemy.engine.URL.create`, which quotes every part;
- identifiers go through `psycopg2.sql.Identifier`, values are parameters;
- copies are exact: decimals travel as their decimal text (CSV through COPY),
  and column types are mapped explicitly (DECIMAL(18,2) -> NUMERIC(18,2) ...).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from program_reporting.core import settings

# DuckDB type name -> PostgreSQL type (DECIMAL(p,s) is handled by pattern).
_DUCK_TO_PG = {
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric(39,0)",
    "UBIGINT": "numeric(20,0)",
    "UINTEGER": "bigint",
    "USMALLINT": "integer",
    "UTINYINT": "smallint",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIMESTAMP_NS": "timestamp",
    "INTERVAL": "interval",
    '"NULL"': "text",
    "NULL": "text",
}
# PostgreSQL (information_schema data_type) -> DuckDB, for reading tables back.
_PG_TO_DUCK = {
    "boolean": "BOOLEAN",
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double precision": "DOUBLE",
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "character": "VARCHAR",
    "date": "DATE",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMPTZ",
    "interval": "INTERVAL",
}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
NULL = r"\N"


class PgError(RuntimeError):
    """A PostgreSQL step of the production profile failed; the message says which."""


def connect(pg: settings.PostgresSettings | None = None, **overrides):
    import psycopg2

    pg = pg or settings.postgres()
    kwargs = pg.dsn()
    kwargs.update(overrides)
    kwargs.setdefault("application_name", "program-reporting")
    kwargs.setdefault("connect_timeout", 10)
    return psycopg2.connect(**kwargs)


def sqlalchemy_url(pg: settings.PostgresSettings | None = None) -> str:
    """The SQLAlchemy URL GX's PostgreSQL datasource needs, every part quoted."""
    from sqlalchemy.engine import URL

    pg = pg or settings.postgres()
    url = URL.create(
        "postgresql+psycopg2",
        username=pg.user,
        password=pg.password or None,
        host=pg.host,
        port=pg.port,
        database=pg.database,
    )
    return url.render_as_string(hide_password=False)


def pg_type(duck_type: str) -> str:
    t = duck_type.upper().strip()
    m = _DECIMAL.match(t)
    if m:
        return f"numeric({m.group(1)},{m.group(2)})"
    if t in _DUCK_TO_PG:
        return _DUCK_TO_PG[t]
    raise PgError(f"no PostgreSQL type for the DuckDB type {duck_type!r}")


def duck_type(data_type: str, precision: int | None, scale: int | None) -> str:
    if data_type == "numeric":
        if precision is None:
            return "DECIMAL(38,10)"
        return f"DECIMAL({precision},{scale or 0})"
    if data_type in _PG_TO_DUCK:
        return _PG_TO_DUCK[data_type]
    raise PgError(f"no DuckDB type for the PostgreSQL type {data_type!r}")


def _duck_literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def copy_query_to_pg(duck, query: str, cur, schema: str, table: str, tmp_dir: Path | None = None) -> int:
    """Create `schema.table` in PostgreSQL with the query's columns (types mapped)
    and fill it through COPY. Returns the row count. The caller owns the transaction."""
    from psycopg2 import sql

    rel = duck.sql(query)
    columns, types = rel.columns, [str(t) for t in rel.types]
    target = sql.Identifier(schema, table)
    cur.execute(
        sql.SQL("CREATE TABLE {} ({})").format(
            target,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(pg_type(t))) for c, t in zip(columns, types)
            ),
        )
    )
    texts = [c for c, t in zip(columns, types) if t.upper() == "VARCHAR"]
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="pgcopy-") as d:
        csv_path = Path(d) / "rows.csv"
        # Text is always quoted, so a text value equal to the NULL marker stays text.
        force = f", FORCE_QUOTE ({', '.join(_duck_ident(c) for c in texts)})" if texts else ""
        duck.execute("SET TimeZone = 'UTC'")
        duck.execute(
            f"COPY ({query}) TO {_duck_literal(csv_path)} "
            f"(FORMAT csv, HEADER false, NULLSTR '{NULL}', QUOTE '\"', ESCAPE '\"'{force})"
        )
        with open(csv_path, encoding="utf-8") as fh:
            cur.copy_expert(
                sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, NULL {})")
                .format(target, sql.Literal(NULL))
                .as_string(cur),
                fh,
            )
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target))
    return cur.fetchone()[0]


def _duck_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pg_columns(cur, schema: str, table: str) -> list[tuple[str, str]]:
    """[(column, DuckDB type)] of a PostgreSQL table, in order; [] when it does not exist."""
    cur.execute(
        """SELECT column_name, data_type, numeric_precision, numeric_scale
                   FROM information_schema.columns WHERE table_schema = %s AND table_name = %s
                   ORDER BY ordinal_position""",
        (schema, table),
    )
    return [(name, duck_type(dt_, p, s)) for name, dt_, p, s in cur.fetchall()]


def copy_pg_to_duck(cur, schema: str, table: str, duck, name: str, tmp_dir: Path | None = None) -> int:
    """Read a PostgreSQL table into a DuckDB table `name`, exactly (COPY as CSV)."""
    from psycopg2 import sql

    cols = pg_columns(cur, schema, table)
    if not cols:
        raise PgError(f"{schema}.{table} does not exist in PostgreSQL")
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="pgcopy-") as d:
        csv_path = Path(d) / "rows.csv"
        with open(csv_path, "w", encoding="utf-8") as fh:
            cur.copy_expert(
                sql.SQL("COPY {} TO STDOUT WITH (FORMAT csv, NULL {})")
                .format(sql.Identifier(schema, table), sql.Literal(NULL))
                .as_string(cur),
                fh,
            )
        spec = "{" + ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': '{t}'" for c, t in cols) + "}"
        duck.execute(
            f"CREATE TABLE {_duck_ident(name)} AS SELECT * FROM read_csv({_duck_literal(csv_path)}, "
            f"columns = {spec}, header = false, nullstr = '{NULL}', allow_quoted_nulls = false, "
            f"quote = '\"', escape = '\"', auto_detect = false)"
        )
    return duck.execute(f"SELECT count(*) FROM {_duck_ident(name)}").fetchone()[0]


def schema_exists(cur, schema: str) -> bool:
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    return cur.fetchone() is not None
