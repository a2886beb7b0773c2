"""`make bench SCALE=3000 DAYS=7` (and its one-file history case) as smoke
tests: every stage runs, through real Airflow, dbt, GX and DuckDB, and the
figures are written. They assert that, not a time: speed goals live in bench/."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from program_reporting.core.settings import REPO_ROOT
from program_reporting.orchestration import dbt_models

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAGES = [
    "simulate",
    "land (history)",
    "land floor (duckdb read_csv, day by day)",
    "land reference (read_csv, all days at once)",
    "build (dbt, full)",
    "build floor (one SQL script)",
    "airflow db (once)",
    "night (Airflow, end to end)",
    "BI refresh (Airflow)",
]


def test_bench_smoke(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "run_bench.py"),
            "--merchants",
            "3000",
            "--days",
            "7",
            "--results",
            str(results),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [json_file] = results.glob("*-3000x7.json")
    result = json.loads(json_file.read_text())
    assert [s["name"] for s in result["stages"]] == STAGES
    for stage in result["stages"]:
        assert stage["seconds"] > 0 and stage["peak_rss_bytes"] > 0, stage
    by = {s["name"]: s for s in result["stages"]}
    floor, at_once = by["land floor (duckdb read_csv, day by day)"], by["land reference (read_csv, all days at once)"]
    assert by["land (history)"]["rows"] == floor["rows"] == at_once["rows"] > 5_000
    build_floor = by["build floor (one SQL script)"]
    assert "error" not in build_floor and build_floor["kpi_rows"] > 0, build_floor  # the floor computed the mart
    # ... the same table as the build's, every cell; its loading and computing timed apart
    assert build_floor["equals_build"] is True and build_floor["differing_rows"] == 0, build_floor
    assert build_floor["load_seconds"] > 0 and build_floor["compute_seconds"] > 0
    assert by["night (Airflow, end to end)"]["exit_code"] == 0 and by["BI refresh (Airflow)"]["exit_code"] == 0
    tasks = by["night (Airflow, end to end)"]["tasks"]  # where the night's time went, from Airflow's database
    assert {"gate_landed", "dbt_build", "validate", "publish", "report"} <= set(tasks), tasks
    # the per-model status tasks as one line, what they add to the night, against the 10 % target
    models = sum(len(m) for m in dbt_models.models().values())
    assert 0 < tasks[f"dbt models ({models} status tasks)"] < tasks["dbt_build"], tasks
    assert not any(t.startswith("dbt.") for t in tasks), tasks
    assert result["targets"]["per-model dbt tasks <= 0.1 x dbt_build"] is not None
    assert result["warehouse_bytes"] > 0
    assert (results / json_file.name.replace(".json", ".md")).read_text().startswith("Benchmark")
    assert set(result["targets"]) and set(result["ratios"]) == {
        "landing_vs_floor",
        "full_build_vs_floor",
        "full_build_vs_floor_compute",
        "night_vs_full_build",
    }
    # the growth table (docs/performance.md) reads the same result
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "growth.py"), str(json_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "| 3,000 x 7 |" in proc.stdout, proc.stdout + proc.stderr


ONE_FILE_STAGES = [
    "simulate",
    "history as one file per source",
    "land (history)",
    "land floor (duckdb read_csv, day by day)",
    "build (dbt, full)",
    "build floor (one SQL script)",
    "airflow db (once)",
    "night (Airflow, end to end)",
    "BI refresh (Airflow)",
]


def test_bench_smoke_one_file_history(tmp_path):
    """`make bench HISTORY=one-file`: the history delivered as one file per
    source, landed, built, then one night through Airflow, with the figures
    and the three targets of the case written."""
    results = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "run_bench.py"),
            "--merchants",
            "2000",
            "--days",
            "6",
            "--history",
            "one-file",
            "--results",
            str(results),
            "--work",
            str(tmp_path / "work"),
            "--keep",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [json_file] = results.glob("*-2000x6-one-file.json")
    result = json.loads(json_file.read_text())
    assert result["history"] == "one-file"
    assert [s["name"] for s in result["stages"]] == ONE_FILE_STAGES
    for stage in result["stages"]:
        assert stage["seconds"] > 0 and stage["peak_rss_bytes"] > 0, stage
    by = {s["name"]: s for s in result["stages"]}
    # one delivery per source, on the history's last date, landed whole
    one_file = by["history as one file per source"]
    drop, raw = tmp_path / "work" / "drop", tmp_path / "work" / "home" / "raw"
    for source, rows in one_file["rows_by_source"].items():
        assert sorted(d.name for d in (drop / source).iterdir()) == ["ds=2020-06-07", "ds=2020-06-08"], source
        control = json.loads((drop / source / "ds=2020-06-07" / "_control.json").read_text())
        assert control["row_count"] == rows > 0
        assert sorted(d.name for d in (raw / source).iterdir()) == ["ds=2020-06-07", "ds=2020-06-08"], source
        landed = json.loads((raw / source / "ds=2020-06-07" / "_reconciliation.json").read_text())
        assert landed["delivered"] == rows and landed["loaded"] > 0.9 * rows, landed
    assert by["land (history)"]["rows"] == one_file["rows"] == by["land floor (duckdb read_csv, day by day)"]["rows"]
    assert by["build floor (one SQL script)"]["equals_build"] is True
    assert by["night (Airflow, end to end)"]["exit_code"] == 0
    targets = result["targets"]
    for target in ("peak memory <= 6 GiB", "full build <= 2 x SQL floor", "night <= full build / 3"):
        assert targets[target] in (True, False), target
    assert result["ratios"]["full_build_vs_floor"] > 0 and result["ratios"]["night_vs_full_build"] > 0
    assert "one file per source" in (results / json_file.name.replace(".json", ".md")).read_text()
