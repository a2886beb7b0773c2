"""Two independent readings of kpis.md must agree: the benchmark's one-pass
SQL floor and the naive Python oracle, on adversarial random raw layers long
enough to reach PAR90 and the 90-day survival cohort."""

from __future__ import annotations

import sys

import pytest

from kpi_oracle import compute
from raw_factory import make_raw, table_rows
from program_reporting.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
from floor import run_floor  # noqa: E402


@pytest.mark.parametrize("seed", [11, 12])
def test_sql_floor_equals_python_oracle(tmp_path, seed):
    make_raw(tmp_path, seed=seed, merchants=50, days=130)
    expected, _segments = compute(tmp_path)
    con, _seconds = run_floor(tmp_path / "raw")
    got = table_rows(con, "SELECT * FROM floor_kpi_program_daily ORDER BY program_code, as_of_date")
    assert len(got) == len(expected) > 100
    mismatches = [(g["as_of_date"], c, g[c], e[c]) for g, e in zip(got, expected) for c in g if g[c] != e[c]]
    assert mismatches == []
    # the data reached every kind of figure, so agreement means something
    maxima = con.execute("SELECT max(par30_balance), max(par90_rate), max(interest_subsidy_cost_to_date), "
                     "max(survival_cohort_90d), max(written_off_to_date), max(exited_merchants) "
                     "FROM floor_kpi_program_daily").fetchone()
    assert all(m and m > 0 for m in maxima), maxima
