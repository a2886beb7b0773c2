"""The marts against the independent Python reading of kpis.md (tests/helpers/kpi_oracle.py)
on an adversarial random raw layer (tests/helpers/raw_factory.py): 130 days, so PAR90 and the
90-day survival cohort are reached; moves and status changes on one day, pilots
enrolled before their first version, late postings, events near local midnight,
out-of-order due dates, write-offs, closed lines, employment corrections. Every
cell of kpi_program_daily and kpi_segment_daily must agree."""

from __future__ import annotations

import duckdb
import pytest
from helpers.kpi_oracle import compute
from helpers.raw_factory import make_raw, table_rows

from program_reporting.core.settings import Paths
from program_reporting.warehouse import build as build_mod

pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("seed", [12])
def test_marts_equal_the_python_oracle(tmp_path, seed):
    paths = Paths(drop=tmp_path / "drop", home=tmp_path / "home")
    last = make_raw(paths.home, seed=seed, merchants=50, days=130)
    build_mod.build(last.isoformat(), f"oracle-{seed}", paths=paths)
    expected_program, expected_segments = compute(paths.home)

    con = duckdb.connect(str(paths.warehouse_db), read_only=True)
    try:
        got = table_rows(con, "SELECT * FROM kpi_program_daily ORDER BY program_code, as_of_date")
        segments = table_rows(
            con, "SELECT * FROM kpi_segment_daily ORDER BY program_code, as_of_date, region, business_type, size_class"
        )
        reached = con.execute(
            "SELECT max(par30_balance), max(par90_rate), max(interest_subsidy_cost_to_date), "
            "max(survival_cohort_90d), max(written_off_to_date), max(exited_merchants), "
            "min(survival_rate_90d) FROM kpi_program_daily"
        ).fetchone()
    finally:
        con.close()

    assert len(got) == len(expected_program) > 200
    assert [(g["as_of_date"], c, g[c], e[c]) for g, e in zip(got, expected_program) for c in g if g[c] != e[c]] == []
    key = ("program_code", "as_of_date", "region", "business_type", "size_class")
    expected_segments.sort(key=lambda r: tuple(r[k] for k in key))
    assert len(segments) == len(expected_segments)
    assert [
        (g["as_of_date"], g["region"], c, g[c], e[c])
        for g, e in zip(segments, expected_segments)
        for c in g
        if g[c] != e[c]
    ] == []
    # the data reached every kind of figure, so agreement means something
    assert all(m is not None and m > 0 for m in reached[:6]), reached
    assert reached[6] < 1  # some of the 90-day cohort exited
