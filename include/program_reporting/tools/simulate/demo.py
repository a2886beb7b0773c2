"""Simulate a week of source deliveries and run the nightly pipeline for each day
through Airflow (what `make run` does), then print the latest published KPIs
and where the published tables, the validation reports and the KPI brief are.

Safe to repeat: the simulator rewrites the same deliveries (same seed) and
every nightly run replaces exactly its date.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from program_reporting.core.settings import parse_ds, paths

log = logging.getLogger(__name__)

DEFAULT_START = "2020-06-02"  # SPARK-2020's launch day
DEFAULT_DAYS = 7
DEFAULT_MERCHANTS = 2000


def run_demo(
    start: str = DEFAULT_START, days: int = DEFAULT_DAYS, merchants: int = DEFAULT_MERCHANTS, seed: int = 2020
) -> int:
    from program_reporting.orchestration import run
    from program_reporting.tools.simulate import simulator as simulate

    start = parse_ds(start)
    if days < 1:
        print("not run: --days must be at least 1")
        return 2
    dates = [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]
    p = paths()
    t0 = time.monotonic()
    log.info("simulating %d days from %s for %d merchants into %s", days, dates[0], merchants, p.drop)
    simulate.simulate(start=dates[0], days=days, merchants=merchants, seed=seed, drop=p.drop, progress=False)
    t_sim = time.monotonic() - t0
    outcomes = run.run_dates(dates)
    total = time.monotonic() - t0
    published = [o for o in outcomes if o.published]
    print()
    print(
        f"simulated {days} days in {t_sim:.0f} s; nightly runs: "
        + ", ".join(f"{o.ds} {'published' if o.published else 'WITHHELD'} ({o.seconds:.0f} s)" for o in outcomes)
    )
    if published:
        print()
        print(latest_kpis_table())
    print()
    print(f"published set:   {p.current_db}  (every run: {p.runs}/<run_id>/)")
    print(f"reports:         {p.reports / 'index.html'}")
    print(f"KPI brief:       {p.exports / 'kpi_brief.html'}")
    print(f"Parquet exports: {p.exports / 'parquet'}/<table>/")
    print(f"total wall time: {total:.0f} s")
    if len(published) != len(dates):
        last = outcomes[-1]
        print(f"NOT PUBLISHED ds={last.ds}: {last.reason}")
        return 1
    return 0


COLUMNS = (
    ("program_code", "program", "{}"),
    ("as_of_date", "as of", "{}"),
    ("enrolled_merchants", "enrolled", "{:,}"),
    ("open_credit_lines", "open lines", "{:,}"),
    ("drawn_to_date", "drawn to date", "{:,.2f}"),
    ("outstanding_balance", "outstanding", "{:,.2f}"),
    ("par30_rate", "PAR30", "pct"),
    ("jobs_retained", "jobs retained", "{:,}"),
    ("reporting_coverage", "reporting", "pct"),
)


def latest_kpis_table() -> str:
    """The latest row per program of kpi_program_daily, as a compact text table."""
    import duckdb

    con = duckdb.connect(str(paths().current_db), read_only=True)
    try:
        have = {
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns where table_name = 'kpi_program_daily'"
            ).fetchall()
        }
        cols = [c for c in COLUMNS if c[0] in have]
        rows = con.execute(
            f"select {', '.join(c[0] for c in cols)} from kpi_program_daily "
            "qualify as_of_date = max(as_of_date) over (partition by program_code) order by program_code"
        ).fetchall()
    finally:
        con.close()
    cells = [[c[1] for c in cols]] + [[_fmt(v, c[2]) for v, c in zip(row, cols)] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["latest published KPIs (kpi_program_daily):"]
    for n, r in enumerate(cells):
        lines.append(
            "  " + "  ".join(v.rjust(w) if n and i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
        )
    return "\n".join(lines)


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if spec == "pct":
        return f"{float(value) * 100:.2f}%"
    return spec.format(value)
