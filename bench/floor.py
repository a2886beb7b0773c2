"""Run the hand-written SQL floor on a raw layer: floor_load.sql reads the raw
parquet files into DuckDB tables, floor_kpi_program_daily.sql computes
kpi_program_daily from them; each is timed on its own.

    python bench/floor.py [RAW] [--memory-limit 6GB] [--database FILE] [--progress]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "include"))

from program_reporting.core import settings  # noqa: E402

LOAD_SQL = HERE / "floor_load.sql"
COMPUTE_SQL = HERE / "floor_kpi_program_daily.sql"


def floor_sql(path: Path, raw: Path) -> str:
    text = path.read_text()
    # Paths are the only substitutions; both are ours, quoted as SQL strings.
    for name, value in (("{raw}", raw), ("{seeds}", settings.SEEDS_DIR)):
        text = text.replace(name, str(value).replace("'", "''"))
    return text


def _execute(con: duckdb.DuckDBPyConnection, sql: str, progress: bool) -> float:
    start = time.perf_counter()
    for statement in con.extract_statements(sql):
        t0 = time.perf_counter()
        con.execute(statement)
        if progress and statement.type.name not in ("SET", "CREATE_FUNC"):
            code = [ln for ln in statement.query.splitlines() if ln.strip() and not ln.strip().startswith("--")]
            name = " ".join(" ".join(code).split())[:70]
            print(f"[floor] {time.perf_counter() - t0:7.1f} s  {name}", flush=True)
    return time.perf_counter() - start


def run_floor(
    raw: Path,
    database: str = ":memory:",
    memory_limit: str | None = None,
    temp_dir: Path | None = None,
    progress: bool = False,
    compute_sql: Path = COMPUTE_SQL,
) -> tuple[duckdb.DuckDBPyConnection, dict[str, float]]:
    """Load the raw layer, then compute (progress: print each statement's
    time); returns the connection holding floor_kpi_program_daily and the
    seconds of each part: {"load": ..., "compute": ...}."""
    con = duckdb.connect(database)
    con.execute(f"SET memory_limit = '{memory_limit or settings.duckdb_memory_limit()}'")
    if temp_dir:
        con.execute("SET temp_directory = ?", [str(temp_dir)])
    load = _execute(con, floor_sql(LOAD_SQL, raw), progress)
    compute = _execute(con, floor_sql(compute_sql, raw), progress)
    return con, {"load": load, "compute": compute}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", nargs="?", type=Path, default=None, help="the raw layer (default: home/raw)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory limit (default: the pipeline's)")
    parser.add_argument("--database", default=":memory:", help="DuckDB database file (default: in memory)")
    parser.add_argument("--temp-dir", type=Path, default=None, help="where DuckDB spills")
    parser.add_argument("--compute-sql", type=Path, default=COMPUTE_SQL, help="the computing script")
    parser.add_argument("--progress", action="store_true", help="print each statement's time")
    args = parser.parse_args(argv)
    con, seconds = run_floor(
        args.raw or settings.paths().raw,
        args.database,
        args.memory_limit,
        args.temp_dir,
        args.progress,
        args.compute_sql,
    )
    print(con.sql("SELECT * FROM floor_kpi_program_daily ORDER BY ALL DESC LIMIT 5"))
    print(f"floor: load {seconds['load']:.1f} s, compute {seconds['compute']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
