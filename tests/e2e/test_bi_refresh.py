"""The BI refresh follows a publish through Airflow's asset scheduling; the
figures' deadline alert fires through the same scheduler and triggerer.

1. The nightly DAG runs (`program-reporting run --no-bi-refresh`) and publishes.
2. Airflow recorded the three mart asset events and queued the consumer DAG
   (AssetDagRunQueue) - the scheduling link.
3. `program-reporting airflow` starts Airflow standalone (scheduler, DAG
   processor, API server, LocalExecutor); its scheduler turns the queued
   asset events into an asset-triggered run of program_reporting_bi_refresh
   and runs it. A run of the New York calendar's night created after its deadline
   had passed raises the deadline alert (scheduler and triggerer). Then Ctrl-C's
   path (SIGTERM) stops the whole process group.
4. The Parquet exports equal the published tables; the brief is self-contained.

Real Airflow, dbt, GX and DuckDB; nothing mocked."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from helpers.airflow_db import airflow_state, free_port

from program_reporting.orchestration.airflow_env import airflow_env

BIN = Path(sys.executable).parent
MARTS = ["kpi_program_daily", "kpi_segment_daily", "kpi_target_progress"]
DS = "2020-06-02"


def group_alive(pgid: int) -> list[int]:
    from program_reporting.orchestration.standalone import group_members

    return group_members(pgid)


@pytest.mark.e2e
def test_publish_triggers_bi_refresh_through_asset_scheduling(env_paths, monkeypatch):
    p = env_paths
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    # Private ports: other Airflows on this machine must not collide with this one.
    monkeypatch.setenv("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC", "2")
    from program_reporting.tools.simulate.simulator import simulate

    simulate(
        start=dt.date.fromisoformat(DS), days=1, merchants=200, seed=11, drop=p.drop, bad_row_share=0.0, progress=False
    )

    # 1. the nightly run publishes (the BI refresh is left to the scheduler)
    proc = subprocess.run(
        [str(BIN / "program-reporting"), "run", "--ds", DS, "--no-bi-refresh"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert not (p.exports / "kpi_brief.html").exists()

    # 2. the scheduling link: asset events from nightly.publish, the consumer queued
    env = airflow_env()
    state = airflow_state(env)
    events = [e for e in state["events"] if e["source_dag_id"] == "program_reporting_nightly"]
    assert sorted(e["asset"] for e in events) == MARTS
    assert all(e["source_task_id"] == "publish" and e["extra"]["ds"] == DS for e in events)
    assert all(e["uri"].startswith(p.current_db.as_uri()) for e in events)
    assert "program_reporting_bi_refresh" in state["queued"]

    # 3. a real scheduler (Airflow standalone, via `program-reporting airflow`) runs the consumer
    port = free_port()
    out = open(p.home / "standalone.log", "w")
    airflow = subprocess.Popen(
        [str(BIN / "program-reporting"), "airflow", "--port", str(port), "--grace", "15"],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pgid = None
    try:
        deadline = time.monotonic() + 420
        run = None
        while time.monotonic() < deadline:
            time.sleep(5)
            log_text = (p.home / "standalone.log").read_text(errors="replace")
            if pgid is None and (m := re.search(r"process group (\d+)", log_text)):
                pgid = int(m.group(1))
            assert airflow.poll() is None, log_text[-5000:]
            runs = [r for r in airflow_state(env)["runs"] if r["dag_id"] == "program_reporting_bi_refresh"]
            if runs and runs[0]["state"] in ("success", "failed", "DagRunState.SUCCESS", "DagRunState.FAILED"):
                run = runs[0]
                break
        assert run is not None, "the scheduler did not run program_reporting_bi_refresh:\n" + log_text[-5000:]
        assert run["state"].lower().endswith("success"), run
        assert "asset_triggered" in run["run_type"].lower(), run
        assert run["consumed"] >= 3
        # OpenLineage under the scheduler: the DAG run's events (scheduler) and its
        # tasks' (LocalExecutor's task processes) reach the same file transport.
        spooled = [
            json.loads(line)
            for f in sorted((p.tmp / "lineage").glob("events*.jsonl"))
            for line in f.read_text().splitlines()
        ]
        refresh = {(e["eventType"], e["job"]["name"]) for e in spooled}
        assert {
            ("START", "program_reporting_bi_refresh"),
            ("START", "program_reporting_bi_refresh.export_parquet"),
            ("COMPLETE", "program_reporting_bi_refresh.export_parquet"),
        } <= refresh, sorted(refresh)

        # 3b. the figures' deadline: a PPP-2020 night (New York calendar) for a date whose
        # deliveries never came, created after its 06:00 deadline had passed; the scheduler
        # finds the deadline missed and the triggerer runs the alert, naming what is missing.
        trigger = subprocess.run(
            [
                str(BIN / "airflow"),
                "dags",
                "trigger",
                "program_reporting_nightly__america_new_york",
                "--logical-date",
                "2020-06-04T06:00:00+00:00",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert trigger.returncode == 0, trigger.stdout[-2000:] + trigger.stderr[-3000:]
        alerts_log = p.home / "alerts.log"
        late = None
        waited = time.monotonic() + 240
        while late is None and time.monotonic() < waited:
            time.sleep(3)
            lines = alerts_log.read_text().splitlines() if alerts_log.exists() else []
            late = next((json.loads(l) for l in lines if json.loads(l)["event"] == "figures_late"), None)
        # only that one: the Shanghai night of step 1 was run after its date's deadline and
        # published, so nothing of it was late
        lines = alerts_log.read_text().splitlines() if alerts_log.exists() else []
        assert [json.loads(l)["event"] for l in lines] == ["figures_late"], lines
        assert late is not None, (
            "no deadline alert:\n" + (p.home / "standalone.log").read_text(errors="replace")[-5000:]
        )
        assert late["programs"] == ["PPP-2020"] and late["ds"] == "2020-06-03"
        assert late["airflow_run_id"].startswith("manual__")
        assert late["due"] == "2020-06-04T10:00:00+00:00"  # 06:00 EDT
        assert "missing deliveries: merchants" in late["message"]
        assert str(p.delivery_dir("credit_events", "2020-06-03") / "_control.json") in late["message"]
    finally:
        airflow.send_signal(signal.SIGTERM)  # what Ctrl-C / a service manager does
        airflow.wait(timeout=120)
        out.close()
    # Nothing of Airflow standalone is left running.
    assert pgid is not None
    assert airflow.returncode == 0
    assert group_alive(pgid) == [], f"processes of group {pgid} survived"

    # 4. the exports equal the published tables; the brief is self-contained
    con = duckdb.connect(str(p.current_db), read_only=True)
    try:
        for table in MARTS:
            folder = p.exports / "parquet" / table
            files = list(folder.glob("*.parquet"))
            assert len(files) == 1, files
            pq = f"read_parquet('{files[0]}')"
            n = con.execute(f"select count(*) from {table}").fetchone()[0]
            assert n > 0
            assert con.execute(f"select count(*) from {pq}").fetchone()[0] == n
            for a, b in ((table, pq), (pq, table)):
                diff = con.execute(f"select count(*) from (select * from {a} except all select * from {b})").fetchone()[
                    0
                ]
                assert diff == 0, (table, a, b)
            types = con.execute(f"describe select * from {table}").fetchall()
            assert con.execute(f"describe select * from {pq}").fetchall() == types
    finally:
        con.close()
    brief = (p.exports / "kpi_brief.html").read_text(encoding="utf-8")
    assert "<svg" in brief and "SPARK-2020" in brief
    assert "Jobs retained against the target" in brief and "5,000,000" in brief
    assert "<script" not in brief.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", brief)


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
