"""Airflow's scheduler, end to end: backfills publish what `program-reporting run`
publishes, each publication triggers the BI refresh through asset scheduling, and
a missed deadline raises its alert. One standalone Airflow serves all three.

One drop, two warehouse homes:
1. the fast path: `program-reporting run --from --to --no-bi-refresh` (`airflow
   dags test`, no scheduler); its runs get their true start in Airflow's database,
   not their 2020 logical date. Airflow recorded the mart asset events and queued
   the BI refresh (AssetDagRunQueue): the scheduling link.
2. `program-reporting airflow` (standalone: scheduler, DAG processor, triggerer,
   API server, LocalExecutor) finds only past dates in the drop and leaves the
   nightly DAGs paused, saying how to backfill them and how to start the
   schedule; then `program-reporting backfill` (it unpauses the DAG and runs
   `airflow backfill create`) over the same dates, two runs allowed at once, as
   the UI's form allows. The backfill's nights run in date order (each waits for
   the one before it), don't wait on delivery sensors, show true durations, and
   publish the same figures, cell by cell.
3. The scheduler turns the backfill's asset events into an asset-triggered run of
   program_reporting_bi_refresh: the Parquet exports equal the published tables,
   the brief is self-contained.
4. A run of the New York calendar's night, created after its deadline had passed,
   raises the deadline alert (scheduler and triggerer), naming what is missing.
5. A headless Chromium screenshot of the grid, every task group open, goes to
   test-output/airflow_grid.png; then Ctrl-C's path (SIGTERM) stops the whole
   process group.

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
from helpers.airflow_db import airflow_state, finished, free_port, succeeded
from helpers.browser import screenshot
from helpers.offline_page import chromium

from program_reporting.core.settings import paths
from program_reporting.orchestration.airflow_env import airflow_env
from program_reporting.orchestration.business_date import logical_date_for

BIN = Path(sys.executable).parent
MARTS = ["kpi_program_daily", "kpi_segment_daily", "kpi_target_progress"]
DATES = ["2020-06-02", "2020-06-03"]
LATE_DS = "2020-06-04"  # not in the drop: its New York night misses its deadline
DAG_ID = "program_reporting_nightly"
BI_REFRESH = "program_reporting_bi_refresh"
SCREENSHOT = Path(__file__).resolve().parents[2] / "test-output" / "airflow_grid.png"


def log_tail(p) -> str:
    return (p.home / "standalone.log").read_text(errors="replace")[-5000:]


def use_home(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("PROGRAM_REPORTING_HOME", str(home))
    home.mkdir(parents=True, exist_ok=True)


def marts(current_db: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(current_db), read_only=True)
    try:
        return {t: sorted(con.execute(f"select * from {t}").fetchall(), key=repr) for t in MARTS}
    finally:
        con.close()


def grid_screenshot(port: int, state: dict, work: Path) -> str:
    """The nightly DAG's grid in headless Chromium, every task group open; saved as
    test-output/airflow_grid.png (with the test output, for a person to look at)."""
    browser = chromium()
    if browser is None:
        pytest.fail("chromium is not installed (.ci/run installs it)")
    task_ids = {t["task_id"] for t in state["tasks"] if t["dag_id"] == DAG_ID}
    groups = sorted({".".join(t.split(".")[:i]) for t in task_ids for i in range(1, t.count(".") + 1)})
    return screenshot(
        browser,
        f"http://localhost:{port}/dags/{DAG_ID}",
        SCREENSHOT,
        work / "browser",
        storage={f"{DAG_ID}/open-groups": json.dumps(groups), f"{DAG_ID}/all-groups": json.dumps(groups)},
        shows="int_credit_line_states",  # a model task inside the open groups
    )


def when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def group_alive(pgid: int) -> list[int]:
    from program_reporting.orchestration.standalone import group_members

    return group_members(pgid)


def assert_exports_equal_published(p) -> None:
    """The BI refresh's Parquet exports equal the published tables; the brief is self-contained."""
    con = duckdb.connect(str(p.current_db), read_only=True)
    try:
        for table in MARTS:
            files = list((p.exports / "parquet" / table).glob("*.parquet"))
            assert len(files) == 1, files
            pq = f"read_parquet('{files[0]}')"
            n = con.execute(f"select count(*) from {table}").fetchone()[0]
            assert n > 0
            assert con.execute(f"select count(*) from {pq}").fetchone()[0] == n
            for a, b in ((table, pq), (pq, table)):
                query = f"select count(*) from (select * from {a} except all select * from {b})"
                assert con.execute(query).fetchone()[0] == 0, (table, a, b)
            types = con.execute(f"describe select * from {table}").fetchall()
            assert con.execute(f"describe select * from {pq}").fetchall() == types
    finally:
        con.close()
    brief = (p.exports / "kpi_brief.html").read_text(encoding="utf-8")
    assert "<svg" in brief and "SPARK-2020" in brief
    assert "Jobs retained against the target" in brief and "5,000,000" in brief
    assert "<script" not in brief.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", brief)


@pytest.mark.e2e
def test_the_scheduler_backfills_refreshes_bi_and_alerts_a_missed_deadline(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.setenv("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC", "2")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")  # the browser needs no login
    drop = tmp_path / "drop"
    monkeypatch.setenv("PROGRAM_REPORTING_DROP", str(drop))
    from program_reporting.tools.simulate.simulator import simulate

    simulate(
        start=dt.date.fromisoformat(DATES[0]),
        days=len(DATES),
        merchants=200,
        seed=23,
        drop=drop,
        bad_row_share=0.0,
        progress=False,
    )

    # 1. the fast path
    use_home(monkeypatch, tmp_path / "home-run")
    fast = subprocess.run(
        [str(BIN / "program-reporting"), "run", "--from", DATES[0], "--to", DATES[-1], "--no-bi-refresh"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=dict(os.environ),
    )
    assert fast.returncode == 0, fast.stdout[-3000:] + fast.stderr[-5000:]
    fast_figures = marts(paths().current_db)
    assert not (paths().exports / "kpi_brief.html").exists()  # the BI refresh is left to a scheduler
    fast_state = airflow_state(airflow_env())
    runs = [r for r in fast_state["runs"] if r["dag_id"] == DAG_ID]
    assert [when(r["logical_date"]) for r in runs] == [logical_date_for(d, "Asia/Shanghai") for d in DATES]
    for r in runs:  # started when it ran, not on its 2020 logical date
        seconds = (when(r["end_date"]) - when(r["start_date"])).total_seconds()
        assert 0 < seconds < 900, r
        assert when(r["start_date"]).year > 2020, r
    # the scheduling link: each night's publish recorded the three mart asset events, the consumer is queued
    events = [e for e in fast_state["events"] if e["source_dag_id"] == DAG_ID]
    assert sorted((e["extra"]["ds"], e["asset"]) for e in events) == [(d, t) for d in DATES for t in MARTS]
    assert all(e["source_task_id"] == "publish" for e in events)
    assert all(e["uri"].startswith(paths().current_db.as_uri()) for e in events)
    assert BI_REFRESH in fast_state["queued"]

    # 2. the scheduler's path: standalone, then `airflow backfill create`
    use_home(monkeypatch, tmp_path / "home-backfill")
    p = paths()
    env = airflow_env()
    port = free_port()
    out = open(p.home / "standalone.log", "w")
    pgid = None
    airflow = subprocess.Popen(
        [str(BIN / "program-reporting"), "airflow", "--port", str(port), "--grace", "15"],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 300
        state = {}
        while time.monotonic() < deadline:
            time.sleep(3)
            assert airflow.poll() is None, (p.home / "standalone.log").read_text(errors="replace")[-5000:]
            state = airflow_state(env, ready=False) or {"serialized": [], "paused": {}}
            if DAG_ID in state["serialized"] and DAG_ID in state["paused"]:
                break
        log_text = (p.home / "standalone.log").read_text(errors="replace")
        pgid = int(re.search(r"process group (\d+)", log_text).group(1))
        assert DAG_ID in state["serialized"], log_text[-5000:]
        # past dates only in the drop: a backfill, not a schedule; the message says how to start either
        assert f"Nightly DAGs paused ({DAG_ID}" in log_text, log_text[:3000]
        assert f"program-reporting backfill --from {DATES[0]} --to {DATES[-1]}" in log_text
        assert "Start the schedule with: AIRFLOW_HOME=" in log_text
        assert state["paused"][DAG_ID] is True

        created = subprocess.run(
            [
                str(BIN / "program-reporting"),
                "backfill",
                "--from",
                DATES[0],
                "--to",
                DATES[-1],
                "--max-active-runs",
                "2",  # both nights start at once: the second must still wait for the first
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ),
        )
        assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-3000:]
        assert "airflow backfill create --dag-id program_reporting_nightly" in created.stderr
        assert f"--from-date {DATES[0][:8]}{int(DATES[0][8:]) + 1:02d}T02:00:00+08:00" in created.stderr

        deadline = time.monotonic() + 900
        backfilled: list[dict] = []
        while time.monotonic() < deadline:
            time.sleep(5)
            assert airflow.poll() is None, (p.home / "standalone.log").read_text(errors="replace")[-5000:]
            state = airflow_state(env)
            backfilled = [r for r in state["runs"] if r["dag_id"] == DAG_ID and r["backfill_id"] is not None]
            if len(backfilled) == len(DATES) and all(finished(r["state"]) for r in backfilled):
                break
        assert len(backfilled) == len(DATES), state["runs"]
        assert all(succeeded(r["state"]) for r in backfilled), backfilled

        # 3. the backfill's publications queued the BI refresh; the scheduler runs it
        refreshes: list[dict] = []
        while time.monotonic() < deadline:
            refreshes = [r for r in state["runs"] if r["dag_id"] == BI_REFRESH]
            if refreshes and all(finished(r["state"]) for r in refreshes) and BI_REFRESH not in state["queued"]:
                break
            time.sleep(3)
            state = airflow_state(env)
        assert refreshes, "the scheduler did not run the BI refresh:\n" + log_tail(p)
        assert all(succeeded(r["state"]) for r in refreshes), refreshes
        assert all("asset_triggered" in r["run_type"].lower() for r in refreshes), refreshes
        assert sum(r["consumed"] for r in refreshes) >= len(MARTS) * len(DATES)
        # OpenLineage under the scheduler: the DAG run's events (scheduler) and its
        # tasks' (LocalExecutor's task processes) reach the same file transport.
        spooled = [
            json.loads(line)
            for f in sorted((p.tmp / "lineage").glob("events*.jsonl"))
            for line in f.read_text().splitlines()
        ]
        refresh_events = {(e["eventType"], e["job"]["name"]) for e in spooled}
        assert {
            ("START", BI_REFRESH),
            ("START", f"{BI_REFRESH}.export_parquet"),
            ("COMPLETE", f"{BI_REFRESH}.export_parquet"),
        } <= refresh_events, sorted(refresh_events)

        # 4. the figures' deadline: a PPP-2020 night (New York calendar) for a date whose
        # deliveries never came, created after its 06:00 deadline had passed; the scheduler
        # finds the deadline missed and the triggerer runs the alert, naming what is missing.
        trigger = subprocess.run(
            [
                str(BIN / "airflow"),
                "dags",
                "trigger",
                "program_reporting_nightly__america_new_york",
                "--logical-date",
                "2020-06-05T06:00:00+00:00",  # LATE_DS's night: 02:00 EDT the next day
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
            alerts = [json.loads(l) for l in alerts_log.read_text().splitlines()] if alerts_log.exists() else []
            late = next((a for a in alerts if a["event"] == "figures_late" and a["ds"] == LATE_DS), None)
        # The backfill's nights were dated after their deadlines too, but their outcome is the
        # backfill's to report: no alert names their dates. (The backfill unpaused the Shanghai
        # DAG, so its scheduled night for today may wait for today's deliveries and, when the
        # test runs across 06:00 Shanghai time, alert as late: that alert is right, and not this
        # test's subject.)
        alerts = [json.loads(l) for l in alerts_log.read_text().splitlines()] if alerts_log.exists() else []
        assert not [a for a in alerts if a.get("ds") in DATES], alerts
        assert late is not None, "no deadline alert:\n" + log_tail(p)
        assert late["programs"] == ["PPP-2020"] and late["ds"] == LATE_DS
        assert late["airflow_run_id"].startswith("manual__")
        assert late["due"] == "2020-06-05T10:00:00+00:00"  # 06:00 EDT the day after LATE_DS
        assert "missing deliveries: merchants" in late["message"]
        assert str(p.delivery_dir("credit_events", LATE_DS) / "_control.json") in late["message"]

        # 5. the UI shows the nights: the grid, every task of the DAG, in a real browser
        grid_text = grid_screenshot(port, state, tmp_path)
    finally:
        airflow.send_signal(signal.SIGTERM)  # what Ctrl-C / a service manager does
        airflow.wait(timeout=120)
        out.close()
    # Nothing of Airflow standalone is left running.
    assert airflow.returncode == 0
    assert pgid is not None and group_alive(pgid) == [], f"processes of group {pgid} survived"
    assert_exports_equal_published(p)

    tasks = {(t["run_id"], t["task_id"]): t for t in state["tasks"] if t["dag_id"] == DAG_ID}
    first, second = backfilled
    # in date order: the second night waited for the first to end before it landed anything
    waited = tasks[(second["run_id"], "wait_for_earlier_night")]
    assert when(waited["end_date"]) >= when(first["end_date"]), (waited, first)
    assert when(tasks[(second["run_id"], "land_merchants")]["start_date"]) >= when(first["end_date"])
    for r in backfilled:
        # true durations: started by the scheduler just now, a few minutes at most
        assert when(r["start_date"]).year > 2020, r
        assert 0 < (when(r["end_date"]) - when(r["start_date"])).total_seconds() < 900, r
        # the deliveries were in the drop: each sensor looked once
        for source in ("merchants", "credit_events", "employment_reports"):
            sensor = tasks[(r["run_id"], f"wait_for_{source}")]
            assert succeeded(sensor["state"]), sensor
            assert (when(sensor["end_date"]) - when(sensor["start_date"])).total_seconds() < 60, sensor

    # the published reports, in date order, and the same figures as the fast path
    index = [line for line in (p.reports / "index.jsonl").read_text().splitlines() if line.strip()]
    published_ds = [re.search(r'"ds":\s*"([0-9-]+)"', line).group(1) for line in index]
    assert published_ds == DATES, index
    assert marts(p.current_db) == fast_figures

    assert SCREENSHOT.stat().st_size > 10_000
    # per-model tasks too: the group dbt open, a model of each layer in the grid
    for task_id in ("wait_for_earlier_night", "dbt_build", "publish", "stg_merchants", "int_credit_line_states"):
        assert task_id in grid_text, grid_text[:3000]
