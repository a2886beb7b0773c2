"""`make bench SCALE=10000 DAYS=14` as a smoke test: every stage runs, through
real Airflow, dbt, GX and DuckDB, and the figures are written. It asserts
that, not a time: speed goals live in bench/."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from program_reporting.settings import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAGES = ["simulate", "land (history)", "land floor (duckdb read_csv, day by day)",
          "land reference (read_csv, all days at once)", "build (dbt, full)",
          "build floor (one SQL script)", "airflow db (once)", "night (Airflow, end to end)", "BI refresh (Airflow)"]


def test_bench_smoke(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "run_bench.py"), "--merchants", "10000", "--days", "14",
         "--results", str(results), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [json_file] = results.glob("*-10000x14.json")
    result = json.loads(json_file.read_text())
    assert [s["name"] for s in result["stages"]] == STAGES
    for stage in result["stages"]:
        assert stage["seconds"] > 0 and stage["peak_rss_bytes"] > 0, stage
    by = {s["name"]: s for s in result["stages"]}
    floor, at_once = by["land floor (duckdb read_csv, day by day)"], by["land reference (read_csv, all days at once)"]
    assert by["land (history)"]["rows"] == floor["rows"] == at_once["rows"] > 50_000
    build_floor = by["build floor (one SQL script)"]
    assert "error" not in build_floor and build_floor["kpi_rows"] > 0, build_floor  # the floor computed the mart
    assert by["night (Airflow, end to end)"]["exit_code"] == 0 and by["BI refresh (Airflow)"]["exit_code"] == 0
    tasks = by["night (Airflow, end to end)"]["tasks"]  # where the night's time went, from Airflow's database
    assert {"gate_landed", "dbt_build", "validate", "publish", "report"} <= set(tasks), tasks
    assert result["warehouse_bytes"] > 0
    assert (results / json_file.name.replace(".json", ".md")).read_text().startswith("Benchmark")
    assert set(result["targets"]) and set(result["ratios"]) == {"landing_vs_floor", "full_build_vs_floor", "night_vs_full_build"}
    # the growth table (README) reads the same result
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "growth.py"), str(json_file)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "| 10,000 x 14 |" in proc.stdout, proc.stdout + proc.stderr
