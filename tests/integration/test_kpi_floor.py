"""Two independent readings of kpis.md must agree: the benchmark's one-pass
SQL floor and the naive Python oracle, on adversarial random raw layers long
enough to reach PAR90 and the 90-day survival cohort, every cell. (The bench
also compares the floor with the dbt mart, every cell: tests/integration/test_bench_smoke.py.)"""

from __future__ import annotations

import sys

import duckdb
import pytest
from helpers.kpi_oracle import compute
from helpers.raw_factory import make_raw, table_rows

from program_reporting.core.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
from floor import run_floor  # noqa: E402


def add_repeats(raw, ds) -> None:
    """A later partition file repeating earlier rows: credit events again with
    every value equal (counted once) and with a different amount (the first
    copy counts), a line opened a second time at another rate (the latest
    opening's rate counts), and reports re-sent with other figures (the latest
    delivery's copy counts)."""
    con = duckdb.connect()
    events, reports = (f"read_parquet('{raw}/{s}/ds=*/*.parquet')" for s in ("credit_events", "employment_reports"))
    con.execute(f"""COPY (
        SELECT * REPLACE (DATE '{ds}' AS _ds, 900000 + row_number() OVER () AS _line) FROM (
            (SELECT * FROM {events} WHERE event_type = 'drawdown' ORDER BY event_id LIMIT 15)
            UNION ALL
            (SELECT * REPLACE (amount + 1 AS amount) FROM {events} WHERE event_type = 'repayment'
             ORDER BY event_id LIMIT 15)
            UNION ALL
            (SELECT * REPLACE (event_id || '-again' AS event_id, event_at + INTERVAL 20 DAY AS event_at,
                               CAST(0.05 AS DECIMAL(12, 6)) AS annual_interest_rate)
             FROM {events} WHERE event_type = 'line_opened' ORDER BY event_id LIMIT 10))
    ) TO '{raw}/credit_events/ds={ds}/repeats.parquet'""")
    con.execute(f"""COPY (
        SELECT * REPLACE (DATE '{ds}' AS _ds, 900000 + row_number() OVER () AS _line, employees + 3 AS employees)
        FROM (SELECT * FROM {reports} ORDER BY report_id LIMIT 15)
    ) TO '{raw}/employment_reports/ds={ds}/repeats.parquet'""")
    con.close()


@pytest.mark.parametrize("seed, repeats", [(11, False), (12, False), (13, True)])
def test_sql_floor_equals_python_oracle(tmp_path, seed, repeats):
    last = make_raw(tmp_path, seed=seed, merchants=50, days=130)
    if repeats:
        add_repeats(tmp_path / "raw", last)
    expected, _segments = compute(tmp_path)
    con, _seconds = run_floor(tmp_path / "raw")
    got = table_rows(con, "SELECT * FROM floor_kpi_program_daily ORDER BY program_code, as_of_date")
    assert len(got) == len(expected) > 100
    mismatches = [(g["as_of_date"], c, g[c], e[c]) for g, e in zip(got, expected) for c in g if g[c] != e[c]]
    assert mismatches == []
    # the data reached every kind of figure, so agreement means something
    maxima = con.execute(
        "SELECT max(par30_balance), max(par90_rate), max(interest_subsidy_cost_to_date), "
        "max(survival_cohort_90d), max(written_off_to_date), max(exited_merchants) "
        "FROM floor_kpi_program_daily"
    ).fetchone()
    assert all(m and m > 0 for m in maxima), maxima
