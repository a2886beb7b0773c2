"""Where things live. Every path the pipeline uses is derived here, from the
settings of ../shared/spec/interface.md, so that no module invents its own."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
SEEDS_DIR = DBT_PROJECT_DIR / "seeds"

SOURCES = ("merchants", "credit_events", "employment_reports")

_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _path_setting(name: str, default: str) -> Path:
    value = os.environ.get(name) or default
    path = Path(value)
    # interface.md: "A relative path is taken from the repository root."
    return path if path.is_absolute() else REPO_ROOT / path


def _float_setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name}={raw!r} is not a number") from exc


def parse_ds(value: str) -> dt.date:
    """A business date as the interface names it: YYYY-MM-DD, a real date.

    Refuses anything else before it can become part of a path or a query."""
    if not isinstance(value, str) or not _DS.match(value):
        raise ValueError(f"business date {value!r} is not of the form YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"business date {value!r} is not a calendar date: {exc}") from exc


def dates_between(first: str, last: str) -> list[str]:
    """The business dates from `first` to `last`, both included (--from / --to)."""
    a, b = parse_ds(first), parse_ds(last)
    if b < a:
        raise ValueError(f"--to {last} is before --from {first}")
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


@dataclass(frozen=True)
class Paths:
    """Every location under the drop folder and PROGRAM_REPORTING_HOME."""

    drop: Path
    home: Path

    # --- drop (written by the source systems) -----------------------------
    def delivery_dir(self, source: str, ds: str) -> Path:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
        parse_ds(ds)
        return self.drop / source / f"ds={ds}"

    # --- home (written by the pipeline) -----------------------------------
    @property
    def raw(self) -> Path:
        """Landed rows without personal data: raw/<source>/ds=<ds>/."""
        return self.home / "raw"

    @property
    def restricted(self) -> Path:
        """Raw personal data (owner name, phone, national id), owner-only."""
        return self.home / "restricted"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def held(self) -> Path:
        """Orphan rows waiting up to ORPHAN_RETRY_DAYS for their merchant: held/<source>/ds=<ds>/."""
        return self.home / "held"

    @property
    def landing_failures(self) -> Path:
        """One JSON file per rejected delivery: landing_failures/<source>/ds=<ds>/<utc>.json."""
        return self.home / "landing_failures"

    @property
    def warehouse_db(self) -> Path:
        """The dbt-built warehouse; only the pipeline opens it."""
        return self.home / "warehouse" / "warehouse.duckdb"

    @property
    def spark_warehouse(self) -> Path:
        """The `spark` target in session mode: its tables (`tables/`, Spark's
        warehouse dir) and its Derby metastore (`metastore_db/`); only the pipeline opens it."""
        return self.home / "warehouse" / "spark"

    @property
    def audit(self) -> Path:
        """Candidate mart sets awaiting validation: audit/<run_id>/kpi.duckdb."""
        return self.home / "audit"

    @property
    def published(self) -> Path:
        return self.home / "published"

    @property
    def current_db(self) -> Path:
        return self.published / "current.duckdb"

    @property
    def runs(self) -> Path:
        return self.published / "runs"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def exports(self) -> Path:
        """What BI tools read besides current.duckdb: Parquet and the KPI brief."""
        return self.home / "exports"

    @property
    def bi(self) -> Path:
        """Apache Superset's own files (`make bi`): its SQLite metadata database,
        its secret key, its log; never read by the pipeline."""
        return self.home / "bi"

    @property
    def tmp(self) -> Path:
        """Scratch space on the same file system, so that renames are atomic."""
        return self.home / "tmp"


def paths() -> Paths:
    return Paths(
        drop=_path_setting("PROGRAM_REPORTING_DROP", "./data/drop"),
        home=_path_setting("PROGRAM_REPORTING_HOME", "./data/warehouse"),
    )


def quarantine_share_limit() -> float:
    """extracts.md: a delivery with more than this share quarantined fails whole."""
    return _float_setting("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", 0.05)


def max_line_bytes() -> int:
    """The longest CSV record a delivery may hold (DuckDB's max_line_size, and
    what one record may cost in memory); a longer one fails the delivery
    (line_too_long). Default 2,000,000 bytes, DuckDB's own."""
    value = _float_setting("PROGRAM_REPORTING_MAX_LINE_BYTES", 2_000_000)
    if value < 1024:
        raise ValueError(f"setting PROGRAM_REPORTING_MAX_LINE_BYTES={value:g} is below 1024 bytes")
    return int(value)


ORPHAN_RETRY_DAYS = 7  # extracts.md: orphans are held and retried for up to 7 days


def duckdb_memory_limit() -> str:
    return os.environ.get("PROGRAM_REPORTING_DUCKDB_MEMORY_LIMIT", "4GB")


def memory_limit_bytes(limit: str) -> int:
    """DuckDB's notation (4GB, 4GiB, 512MB) in bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?)B?\s*", limit, re.IGNORECASE)
    if not m:
        raise ValueError(f"PROGRAM_REPORTING_DUCKDB_MEMORY_LIMIT={limit!r}: expected e.g. 4GB")
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** "_KMGT".index(m.group(2).upper() or "_"))


def line_pass_events() -> int:
    """Credit events per pass of a full build of int_credit_line_states
    (macro line_passes): 10 million per GB of DuckDB memory unless set. At
    4GB a pass of 38M events spilled 11 GiB, one of 19M events 3.7 GiB."""
    value = os.environ.get("PROGRAM_REPORTING_LINE_PASS_EVENTS")
    if value:
        return max(1, int(value))
    return max(1, memory_limit_bytes(duckdb_memory_limit()) // 100)


def gate_batch_rows() -> int:
    """Rows of a frame the gate hands GX at once (PROGRAM_REPORTING_GATE_BATCH_ROWS):
    with the DuckDB memory limit, what bounds the gate's memory whatever the size
    of a delivery. Below 100 rows a batch costs GX more than it checks."""
    raw = os.environ.get("PROGRAM_REPORTING_GATE_BATCH_ROWS", "")
    try:
        value = int(raw) if raw else 1_000_000
    except ValueError as exc:
        raise ValueError(f"setting PROGRAM_REPORTING_GATE_BATCH_ROWS={raw!r} is not a whole number") from exc
    if value < 100:
        raise ValueError(f"setting PROGRAM_REPORTING_GATE_BATCH_ROWS={raw!r} is below 100 rows")
    return value


def duckdb_threads() -> int:
    return int(os.environ.get("PROGRAM_REPORTING_DUCKDB_THREADS", "0") or 0) or (os.cpu_count() or 2)


def duckdb_config(temp_directory: Path | None = None) -> dict:
    """Settings of the pipeline's own DuckDB connections: bounded memory, and
    spilling under the home's tmp/ (not the working directory) beyond it."""
    return {
        "threads": duckdb_threads(),
        "memory_limit": duckdb_memory_limit(),
        "temp_directory": str(temp_directory or paths().tmp / "duckdb"),
    }


# --- production profile (PostgreSQL warehouse and BI serving schema) -------


def engine() -> str:
    """The engine the nightly build runs on (PROGRAM_REPORTING_ENGINE): `duckdb`
    (the embedded warehouse, default) or `spark` (dbt-spark: pyspark in local
    mode, or a cluster by PROGRAM_REPORTING_SPARK_METHOD). Landing, the gates,
    publishing and the reports are the same on both."""
    value = os.environ.get("PROGRAM_REPORTING_ENGINE") or "duckdb"
    if value not in ("duckdb", "spark"):
        raise ValueError(f"PROGRAM_REPORTING_ENGINE={value!r}: expected duckdb or spark")
    return value


def dbt_target() -> str:
    """The engine dbt builds the warehouse on (PROGRAM_REPORTING_DBT_TARGET, the
    target dbt_project/profiles.yml picks): `duckdb` (the embedded warehouse,
    default), `postgres` (the cross-engine check; raw layer from load-raw-pg) or
    `spark`. Unset, it follows PROGRAM_REPORTING_ENGINE, as profiles.yml does."""
    target = os.environ.get("PROGRAM_REPORTING_DBT_TARGET") or engine()
    if target not in ("duckdb", "postgres", "spark"):
        raise ValueError(f"PROGRAM_REPORTING_DBT_TARGET={target!r}: expected duckdb, postgres or spark")
    return target


def spark_driver_memory() -> str:
    """PROGRAM_REPORTING_SPARK_DRIVER_MEMORY: the session's JVM heap (local mode: driver and executors)."""
    return os.environ.get("PROGRAM_REPORTING_SPARK_DRIVER_MEMORY") or "2g"


def spark_shuffle_partitions() -> str:
    """PROGRAM_REPORTING_SPARK_SHUFFLE_PARTITIONS: Spark's partitions after a shuffle
    (default 8: Spark's 200 are 200 tasks per stage for a small night)."""
    raw = os.environ.get("PROGRAM_REPORTING_SPARK_SHUFFLE_PARTITIONS") or "8"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"setting PROGRAM_REPORTING_SPARK_SHUFFLE_PARTITIONS={raw!r} is not a positive whole number")
    return raw


SPARK_METHODS = ("session", "thrift", "http")


@dataclass(frozen=True)
class SparkSettings:
    """The dbt `spark` target (profiles.yml reads the same variables). `session`:
    pyspark in this process, master `master`, its warehouse and Derby metastore
    under the home (`Paths.spark_warehouse`); `thrift`/`http`: a cluster's Spark
    Thrift Server or Databricks endpoint, where the raw layer must be readable
    at `raw_location` (docs/production.md)."""

    method: str
    master: str
    host: str
    port: int
    user: str
    token: str
    cluster: str
    schema: str
    raw_location: str


def spark() -> SparkSettings:
    method = os.environ.get("PROGRAM_REPORTING_SPARK_METHOD") or "session"
    if method not in SPARK_METHODS:
        raise ValueError(f"PROGRAM_REPORTING_SPARK_METHOD={method!r}: expected one of {', '.join(SPARK_METHODS)}")
    raw_port = os.environ.get("PROGRAM_REPORTING_SPARK_PORT") or ("10000" if method == "thrift" else "443")
    try:
        port = int(raw_port)
    except ValueError as exc:
        raise ValueError(f"setting PROGRAM_REPORTING_SPARK_PORT={raw_port!r} is not a port number") from exc
    return SparkSettings(
        method=method,
        master=os.environ.get("PROGRAM_REPORTING_SPARK_MASTER") or "local[2]",
        host=os.environ.get("PROGRAM_REPORTING_SPARK_HOST") or "localhost",
        port=port,
        user=os.environ.get("PROGRAM_REPORTING_SPARK_USER", ""),
        token=os.environ.get("PROGRAM_REPORTING_SPARK_TOKEN", ""),
        cluster=os.environ.get("PROGRAM_REPORTING_SPARK_CLUSTER", ""),
        schema=os.environ.get("PROGRAM_REPORTING_SPARK_SCHEMA") or "program_reporting",
        raw_location=os.environ.get("PROGRAM_REPORTING_SPARK_RAW_LOCATION", ""),
    )


def warehouse_target() -> str:
    """`duckdb` (embedded default) or `postgres` (production profile)."""
    target = os.environ.get("PROGRAM_REPORTING_TARGET", "duckdb")
    if target not in ("duckdb", "postgres"):
        raise ValueError(f"PROGRAM_REPORTING_TARGET={target!r}: expected duckdb or postgres")
    return target


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    user: str
    password: str
    database: str

    def dsn(self, database: str | None = None) -> dict:
        """Keyword arguments for psycopg2.connect: never a DSN string built from text."""
        kwargs = {"host": self.host, "port": self.port, "user": self.user, "dbname": database or self.database}
        if self.password:
            kwargs["password"] = self.password
        return kwargs


def postgres() -> PostgresSettings:
    return PostgresSettings(
        host=os.environ.get("PROGRAM_REPORTING_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("PROGRAM_REPORTING_PG_PORT", "5432")),
        user=os.environ.get("PROGRAM_REPORTING_PG_USER", "postgres"),
        password=os.environ.get("PROGRAM_REPORTING_PG_PASSWORD", ""),
        database=os.environ.get("PROGRAM_REPORTING_PG_DATABASE", "program_reporting"),
    )


PUBLISHED_SCHEMA = "published"
# Every set PostgreSQL served, by run and validity interval (postgres/history.py).
PUBLISHED_HISTORY_SCHEMA = "published_history"
BI_READER_ROLE = "bi_reader"
# Regional access (postgres/access.py): which role may read which regions' rows, and the
# group role whose members read the region-grained tables, filtered by row-level security.
PUBLISHED_ACCESS_SCHEMA = "published_access"
BI_REGIONAL_ROLE = "bi_regional"


# --- the BI server (Apache Superset, `make bi`; bi/ and program_reporting.bi) ----


def bi_port() -> int:
    """PROGRAM_REPORTING_BI_PORT: where Superset listens on 127.0.0.1 (default 8088)."""
    raw = os.environ.get("PROGRAM_REPORTING_BI_PORT") or "8088"
    try:
        port = int(raw)
    except ValueError as exc:
        raise ValueError(f"setting PROGRAM_REPORTING_BI_PORT={raw!r} is not a port number") from exc
    if not 0 < port < 65536:
        raise ValueError(f"setting PROGRAM_REPORTING_BI_PORT={raw!r} is not a port number")
    return port


def bi_admin_user() -> str:
    """PROGRAM_REPORTING_BI_ADMIN_USER: Superset's admin (default admin)."""
    return os.environ.get("PROGRAM_REPORTING_BI_ADMIN_USER") or "admin"


def bi_admin_password() -> str | None:
    """PROGRAM_REPORTING_BI_ADMIN_PASSWORD: the admin's password. There is no default:
    None when unset or blank, and `make bi` refuses to start."""
    value = os.environ.get("PROGRAM_REPORTING_BI_ADMIN_PASSWORD", "")
    return value if value.strip() else None
