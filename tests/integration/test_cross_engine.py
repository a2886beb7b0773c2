"""The same dbt project on two engines: DuckDB (the embedded default) and
PostgreSQL (dbt-postgres, the `postgres` target), built from the same
simulated week, must give the same three published marts, cell by cell, with
the same column types."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg2
import pytest

from program_reporting.core import settings
from program_reporting.landing import land as landing
from program_reporting.postgres import raw as warehouse_pg
from program_reporting.warehouse import build

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]

START = dt.date(2020, 6, 2)
DAYS = [(START + dt.timedelta(days=i)).isoformat() for i in range(7)]
MARTS = ("kpi_program_daily", "kpi_segment_daily", "kpi_target_progress")
KEYS = {
    "kpi_program_daily": ["program_code", "as_of_date"],
    "kpi_segment_daily": ["program_code", "as_of_date", "region", "business_type", "size_class"],
    "kpi_target_progress": ["program_code", "as_of_date", "metric"],
}
DBT = str(Path(sys.executable).with_name("dbt"))

# The postgres dispatch of the engine-specific macros is the last piece of
# issue 8 (2): until dbt_project/macros has it, dbt-postgres cannot build
# int_credit_line_states (no IGNORE NULLS) and the comparison cannot run.
_PG_MACROS = "postgres__carry_forward" in "".join(
    f.read_text(encoding="utf-8") for f in (settings.DBT_PROJECT_DIR / "macros").glob("*.sql")
)


def _same_type(duck_type: str, pg: tuple) -> bool:
    data_type, precision, scale = pg
    t = duck_type.upper()
    if t.startswith("DECIMAL"):
        return data_type == "numeric" and t == f"DECIMAL({precision},{scale})"
    same = {
        "VARCHAR": ("character varying", "text"),
        "BIGINT": ("bigint",),
        "DATE": ("date",),
        "INTEGER": ("integer",),
        "BOOLEAN": ("boolean",),
    }
    return data_type in same.get(t, ())


def _dbt_build_postgres(p, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROGRAM_REPORTING_DBT_TARGET": "postgres", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    return subprocess.run(
        [
            DBT,
            "build",
            "--target",
            "postgres",
            "--project-dir",
            str(settings.DBT_PROJECT_DIR),
            "--profiles-dir",
            str(settings.DBT_PROJECT_DIR),
            "--target-path",
            str(tmp_path / "dbt_target_pg"),
            "--log-path",
            str(tmp_path / "dbt_logs_pg"),
            "--vars",
            json.dumps({"ds": DAYS[-1]}),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.skipif(
    not _PG_MACROS,
    reason="dbt_project/macros has no postgres__carry_forward yet (dbt-postgres cannot build int_credit_line_states)",
)
def test_duckdb_and_postgres_build_identical_marts(pg_database, env_paths, tmp_path):
    from program_reporting.tools.simulate.simulator import simulate

    p = env_paths
    # Contract-breaking rows, late events and orphans included: both engines see the same landed layer.
    simulate(start=START, days=len(DAYS), merchants=150, seed=5, drop=p.drop, progress=False)
    for ds in DAYS:
        for source in settings.SOURCES:
            landing.land(source, ds, paths=p)
        landing.release_orphans(ds, paths=p)

    build.build(DAYS[-1], "xeng-duckdb", full_refresh=True, paths=p)
    loaded = warehouse_pg.load_raw(p)
    assert all(loaded[s] > 0 for s in settings.SOURCES)
    proc = _dbt_build_postgres(p, tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "ERROR=0" in proc.stdout

    duck = duckdb.connect(str(p.warehouse_db), read_only=True)
    conn = psycopg2.connect(**settings.postgres().dsn())
    try:
        with conn.cursor() as cur:
            for table in MARTS:
                described = duck.execute(f"DESCRIBE main.{table}").fetchall()
                cols = [c for c, *_ in described]
                cur.execute(
                    """SELECT column_name, data_type, numeric_precision, numeric_scale
                               FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s
                               ORDER BY ordinal_position""",
                    (table,),
                )
                pg_cols = cur.fetchall()
                assert [c[0] for c in pg_cols] == cols, table
                for (name, duck_type, *_), pg_col in zip(described, pg_cols):
                    assert _same_type(duck_type, pg_col[1:]), (table, name, duck_type, pg_col)

                order = ", ".join(KEYS[table])
                expected = duck.execute(f"SELECT * FROM main.{table} ORDER BY {order}").fetchall()
                cur.execute(f"SELECT {', '.join(cols)} FROM public.{table} ORDER BY {order}")
                actual = cur.fetchall()
                assert len(expected) > 0 and len(actual) == len(expected), (table, len(expected), len(actual))
                diffs = [
                    (KEYS[table], e[: len(KEYS[table])], cols[j], e[j], a[j])
                    for e, a in zip(expected, actual)
                    for j in range(len(cols))
                    if e[j] != a[j] or type(e[j]) is not type(a[j])
                ]
                assert not diffs, f"{table}: {len(diffs)} cells differ, first: {diffs[:5]}"
            # Not trivially equal: money, rates and jobs are there.
            cur.execute(
                "SELECT sum(drawn_to_date), max(utilization_rate), sum(jobs_current) FROM public.kpi_program_daily"
            )
            drawn, util, jobs = cur.fetchone()
            assert drawn > 0 and util is not None and jobs > 0
    finally:
        duck.close()
        conn.close()
