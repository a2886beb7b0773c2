"""The BI refresh's exports (publishing/exports.py) and brief (reporting/brief.py) on a
hand-made published set, no Airflow. The refresh triggered by a publication, through
Airflow's asset scheduling, is in tests/e2e/test_e2e_scheduler.py."""

from __future__ import annotations

import os

import duckdb


def test_exports_swap_atomically_and_brief_handles_nulls(env_paths):
    """Fast, no Airflow: a hand-made published set, exported twice; the brief of
    a program without a target and with null rates still renders."""
    from program_reporting.publishing import exports
    from program_reporting.reporting import brief

    p = env_paths
    p.published.mkdir(parents=True)
    con = duckdb.connect(str(p.current_db))
    con.execute("""
        create table kpi_program_daily as
        select program_code, date '2020-06-01' + i::int as as_of_date, (i * 10)::bigint as enrolled_merchants,
               (i * 1000.50)::decimal(18,2) as drawn_to_date, (i * 700.25)::decimal(18,2) as outstanding_balance,
               case when i < 3 then null else (i / 100.0)::decimal(12,6) end as par30_rate,
               (i * 50)::bigint as jobs_retained
        from (select unnest(range(1, 6)) as i), (values ('SPARK-2020'), ('PPP-2020')) t(program_code)""")
    con.execute("""create table kpi_target_progress as select 'SPARK-2020' as program_code, date '2020-06-06' as as_of_date,
                   'jobs_retained' as metric, 5000000::decimal(18,2) as target_value, 250::decimal(18,2) as actual_value,
                   0.00005::decimal(12,6) as progress_rate""")
    con.execute(
        "create table kpi_segment_daily as select 'SPARK-2020' as program_code, date '2020-06-06' as as_of_date"
    )
    con.close()

    first = exports.export_parquet()
    link = p.exports / "parquet" / "kpi_program_daily"
    target_before = os.readlink(link)
    second = exports.export_parquet()
    assert set(second) == {"kpi_program_daily", "kpi_segment_daily", "kpi_target_progress"} == set(first)
    assert link.is_symlink() and os.readlink(link) != target_before
    # Old versions are pruned; exactly one version per table is left.
    assert len(list((p.exports / "parquet" / ".versions").iterdir())) == 3
    check = duckdb.connect()
    assert check.execute(f"select count(*) from read_parquet('{second['kpi_program_daily']}')").fetchone()[0] == 10

    html = brief.write_brief().read_text(encoding="utf-8")
    assert html.count("<section>") == 2
    assert "No jobs target for this program." in html  # PPP-2020
    assert "5,000,000" in html and "0.0%" in html  # SPARK-2020: 250 of 5,000,000
    assert "<script" not in html.lower() and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
