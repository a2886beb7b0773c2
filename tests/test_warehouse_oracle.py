"""The dbt marts against an independent reading of kpis.md (tests/kpi_oracle.py),
cell by cell, for both kpi_program_daily and kpi_segment_daily:
  - a simulated week that went through the real simulator and landing;
  - an adversarial random raw layer of 130 days (PAR90, survival cohorts,
    region moves, same-day versions, late postings)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from kpi_oracle import compute
from raw_factory import make_raw, table_rows
from program_reporting import build, landing, simulate
from program_reporting.settings import SOURCES

PROGRAM_KEY = ("program_code", "as_of_date")
SEGMENT_KEY = ("program_code", "as_of_date", "region", "business_type", "size_class")


def _compare(db, name, expected, key):
    with duckdb.connect(str(db), read_only=True) as con:
        got = {tuple(r[k] for k in key): r for r in table_rows(con, f"SELECT * FROM {name}")}
    exp = {tuple(r[k] for k in key): r for r in expected}
    assert set(got) == set(exp), f"{name}: keys differ: only dbt {sorted(set(got) - set(exp))[:5]}, only oracle {sorted(set(exp) - set(got))[:5]}"
    mismatches = [(k, c, got[k][c], v) for k in sorted(exp) for c, v in exp[k].items() if got[k][c] != v]
    assert mismatches == [], f"{name}: {len(mismatches)} cells differ, first: {mismatches[:10]}"
    return len(got)


def test_simulated_week_through_landing_matches_oracle(env_paths):
    start = dt.date(2020, 6, 2)
    simulate.simulate(start=start, days=7, merchants=250, seed=5, drop=env_paths.drop, progress=False)
    for i in range(7):
        ds = (start + dt.timedelta(days=i)).isoformat()
        for source in SOURCES:
            landing.land(source, ds, env_paths)
        landing.release_orphans(ds, env_paths)
    build.build(ds, "oracle-week", full_refresh=True, paths=env_paths)
    program, segment = compute(env_paths.home)
    assert _compare(env_paths.warehouse_db, "kpi_program_daily", program, PROGRAM_KEY) > 50
    assert _compare(env_paths.warehouse_db, "kpi_segment_daily", segment, SEGMENT_KEY) > 500


def test_adversarial_raw_layer_matches_oracle(env_paths):
    latest = make_raw(env_paths.home, seed=12, merchants=50, days=130)
    build.build(latest.isoformat(), "oracle-adversarial", full_refresh=True, paths=env_paths)
    program, segment = compute(env_paths.home)
    assert max(r["par90_rate"] or 0 for r in program) > 0
    assert min(r["survival_rate_90d"] or 1 for r in program) < 1
    _compare(env_paths.warehouse_db, "kpi_program_daily", program, PROGRAM_KEY)
    _compare(env_paths.warehouse_db, "kpi_segment_daily", segment, SEGMENT_KEY)
