"""The `spark` target from Python: the session dbt-spark builds on, so that the
build log (build_log.py) and the audit set (build.stage_audit) read and write
the same tables as dbt.

In session mode dbt-spark runs pyspark in this very process and takes the
active session (`SparkSession.builder.getOrCreate()`): `session()` creates it
first, with the settings dbt_project/profiles.yml gives it in session mode (the
two must agree: a session, once created, keeps its static settings). A session
of another home (a test, a backfill in the same process) is stopped first, so
that a build never writes into another home's warehouse.

`thrift` and `http` reach a cluster through dbt only: the build log and the
audit set need a session in this process (docs/production.md says what is
missing there).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from program_reporting.core import settings
from program_reporting.core.settings import Paths

log = logging.getLogger(__name__)


def session_conf(paths: Paths) -> dict[str, str]:
    """The session's settings: profiles.yml's `server_side_parameters` in session mode."""
    home = str(paths.home)
    spark_home = str(paths.spark_warehouse)
    return {
        "spark.master": settings.spark().master,
        "spark.app.name": "program-reporting",
        "spark.driver.memory": settings.spark_driver_memory(),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": f"{spark_home}/tables",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={spark_home}/metastore_db;create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={spark_home} -Djava.io.tmpdir={home}/tmp",
        "spark.local.dir": f"{home}/tmp/spark",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": settings.spark_shuffle_partitions(),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.hive.metastorePartitionPruning": "false",
        "spark.log.level": "ERROR",
        # dbt-spark turns ANSI mode off in every session it opens (connections.py)
        "spark.sql.ansi.enabled": "false",
    }


def session(paths: Paths):
    """The Spark session of this home (created, or the active one when it is this home's)."""
    spark = settings.spark()
    if spark.method != "session":
        raise RuntimeError(
            f"PROGRAM_REPORTING_SPARK_METHOD={spark.method}: the build log and the audit set need a Spark "
            "session in this process (session mode); see docs/production.md"
        )
    from pyspark.sql import SparkSession

    conf = session_conf(paths)
    active = SparkSession.getActiveSession()
    if active is not None and active.conf.get("spark.sql.warehouse.dir") != conf["spark.sql.warehouse.dir"]:
        log.info("stopping the Spark session of another home (%s)", active.conf.get("spark.sql.warehouse.dir"))
        active.stop()
    (paths.tmp / "spark").mkdir(parents=True, exist_ok=True)
    paths.spark_warehouse.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def schema() -> str:
    return settings.spark().schema


def python_value(value: Any) -> Any:
    """A value collected from Spark as DuckDB would give it: a TIMESTAMP (an
    instant; pyspark gives this process's local wall clock) as an aware UTC datetime."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.astimezone(dt.UTC)
    return value


def read_table(paths: Paths, table: str):
    """A table of the target schema as an Arrow table, its types mapped to DuckDB's
    (Spark's string is VARCHAR, decimal(p,s) DECIMAL(p,s), timestamp TIMESTAMPTZ)."""
    import pyarrow as pa

    spark = session(paths)
    frame = spark.table(f"{schema()}.{table}")
    fields = []
    for field in frame.schema.fields:
        name, kind = field.name, field.dataType.simpleString()
        if kind == "string":
            fields.append(pa.field(name, pa.string()))
        elif kind.startswith("decimal"):
            p, s = (int(x) for x in kind[len("decimal(") : -1].split(","))
            fields.append(pa.field(name, pa.decimal128(p, s)))
        elif kind == "date":
            fields.append(pa.field(name, pa.date32()))
        elif kind == "bigint":
            fields.append(pa.field(name, pa.int64()))
        elif kind == "int":
            fields.append(pa.field(name, pa.int32()))
        elif kind == "boolean":
            fields.append(pa.field(name, pa.bool_()))
        elif kind == "timestamp":
            fields.append(pa.field(name, pa.timestamp("us", tz="UTC")))
        elif kind == "double":
            fields.append(pa.field(name, pa.float64()))
        else:
            raise TypeError(f"{table}.{name}: Spark type {kind} has no DuckDB counterpart here")
    return frame.toArrow().cast(pa.schema(fields))
