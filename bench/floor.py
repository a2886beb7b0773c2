"""Run the hand-written SQL floor (floor_kpi_program_daily.sql) on a raw layer."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "include"))

from program_reporting import settings  # noqa: E402


def floor_sql(raw: Path) -> str:
    text = (HERE / "floor_kpi_program_daily.sql").read_text()
    # Paths are the only substitutions; both are ours, quoted as SQL strings.
    for name, value in (("{raw}", raw), ("{seeds}", settings.SEEDS_DIR)):
        text = text.replace(name, str(value).replace("'", "''"))
    return text


def run_floor(raw: Path, database: str = ":memory:", memory_limit: str | None = None,
              temp_dir: Path | None = None, progress: bool = False) -> tuple[duckdb.DuckDBPyConnection, float]:
    """Execute the floor, statement by statement (progress: print each one's
    time); returns the connection holding floor_kpi_program_daily, and seconds."""
    con = duckdb.connect(database)
    con.execute(f"SET memory_limit = '{memory_limit or settings.duckdb_memory_limit()}'")
    if temp_dir:
        con.execute("SET temp_directory = ?", [str(temp_dir)])
    start = time.perf_counter()
    for statement in con.extract_statements(floor_sql(raw)):
        t0 = time.perf_counter()
        con.execute(statement)
        if progress and statement.type.name != "SET":
            code = [ln for ln in statement.query.splitlines() if ln.strip() and not ln.strip().startswith("--")]
            name = " ".join(" ".join(code).split())[:70]
            print(f"[floor] {time.perf_counter() - t0:7.1f} s  {name}", flush=True)
    return con, time.perf_counter() - start


if __name__ == "__main__":
    raw = Path(sys.argv[1]) if len(sys.argv) > 1 else settings.paths().raw
    con, seconds = run_floor(raw)
    print(con.sql("SELECT * FROM floor_kpi_program_daily ORDER BY ALL DESC LIMIT 5"))
    print(f"floor: {seconds:.1f}s")
