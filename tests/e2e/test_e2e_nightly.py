"""End to end through real Airflow, dbt, Great Expectations and DuckDB: the
nightly DAG run by `program-reporting run` (airflow dags test with the
project's environment, the OpenLineage provider's listener) on small simulated
deliveries. Nothing is mocked.

Each test has its own drop folder, warehouse home and AIRFLOW_HOME
(env_paths), so parallel runs never share a metadata database."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from helpers import lineage_graph
from helpers.airflow_db import airflow_state

from program_reporting.core.settings import SOURCES
from program_reporting.orchestration import dbt_models
from program_reporting.orchestration.airflow_env import airflow_env

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).with_name("program-reporting"))
START = dt.date(2020, 6, 2)
DAYS = [(START + dt.timedelta(days=i)).isoformat() for i in range(3)]


@pytest.fixture
def airflow_paths(env_paths, monkeypatch):
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)  # default: <home>/airflow, private to the test
    for name in (
        "PROGRAM_REPORTING_SENSOR_TIMEOUT_SECONDS",
        "PROGRAM_REPORTING_SENSOR_POKE_SECONDS",
        # OpenLineage's defaults: the file transport under the home
        "PROGRAM_REPORTING_OPENLINEAGE_URL",
        "OPENLINEAGE_URL",
        "AIRFLOW__OPENLINEAGE__TRANSPORT",
        "AIRFLOW__OPENLINEAGE__DISABLED",
        "AIRFLOW__OPENLINEAGE__NAMESPACE",
    ):
        monkeypatch.delenv(name, raising=False)
    return env_paths


def simulate(p, days: int, merchants: int = 200) -> dict:
    from program_reporting.tools.simulate.simulator import simulate as sim

    # Clean deliveries: this test is about orchestration; bad rows have their own tests.
    return sim(start=START, days=days, merchants=merchants, seed=7, drop=p.drop, bad_row_share=0.0, progress=False)


def run_cli(*args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    proc = subprocess.run(
        [CLI, "run", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    print(f"program-reporting run {' '.join(args)}: exit {proc.returncode} in {time.monotonic() - t0:.0f} s")
    print("last line:", last_line(proc))
    return proc


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stdout.strip().splitlines() or [""]
    return lines[-1]


def published_runs(p) -> dict[str, Path]:
    return {d.name: d / "kpi.duckdb" for d in sorted(p.runs.iterdir())} if p.runs.exists() else {}


# the nightly DAG's per-model status tasks (the group dbt): one per model of dbt_project/models
MODEL_TASKS = sorted(f"dbt.{layer}.{m}" for layer, models in dbt_models.models().items() for m in models)


def nights() -> list[dict]:
    """The nightly DAG's runs in Airflow's metadata database, by logical date: state and task states."""
    state = airflow_state(airflow_env())
    runs = [r for r in state["runs"] if r["dag_id"] == "program_reporting_nightly"]
    for r in runs:
        r["state"] = _state(r["state"])
        r["tasks"] = {
            t["task_id"]: _state(t["state"])
            for t in state["tasks"]
            if t["dag_id"] == r["dag_id"] and t["run_id"] == r["run_id"]
        }
    return runs


def _state(value: str) -> str:
    return value.lower().rsplit(".", 1)[-1]  # "success" or "TaskInstanceState.SUCCESS"


def model_states(night: dict) -> dict[str, str]:
    return {t: s for t, s in night["tasks"].items() if t.startswith("dbt.")}


def max_as_of(db: Path) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select max(as_of_date) from kpi_program_daily").fetchone()[0].isoformat()
    finally:
        con.close()


def test_three_nights_publish_in_order_and_a_redelivery_rerun_restates(airflow_paths):
    p = airflow_paths
    simulate(p, days=len(DAYS))

    proc = run_cli("--from", DAYS[0], "--to", DAYS[-1], "--no-bi-refresh")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert last_line(proc).startswith("published 3 date(s)")

    runs = published_runs(p)
    assert len(runs) == 3, runs
    # Run ids start with their ds and sort in run order: night i published data up to DAYS[i].
    assert [r.split("_")[0] for r in runs] == DAYS
    assert [max_as_of(db) for db in runs.values()] == DAYS
    assert os.path.samefile(p.current_db, list(runs.values())[-1])
    for run_id in runs:
        report = json.loads((p.reports / run_id / "report.json").read_text())
        assert report["decision"] == "published"
        assert report["airflow_run_id"].startswith("manual__")
        assert_has_its_report(p, run_id)
    assert (p.reports / "index.html").exists()
    # Every model of each night's build shows as its own task: all built and tested
    airflow_runs = nights()
    assert [r["state"] for r in airflow_runs] == ["success"] * 3
    for night in airflow_runs:
        assert model_states(night) == dict.fromkeys(MODEL_TASKS, "success")
        assert night["tasks"]["dbt_build"] == "success"
    [log_file] = (p.home / "airflow" / "logs" / "program-reporting-run").glob(f"{DAYS[-1]}_*.log")
    text = log_file.read_text(errors="replace")
    assert re.search(r"model kpi_program_daily: success in \d+\.\d\d s \(adapter: OK\)", text)
    assert re.search(r"\n\d+ tests \(\d+ pass\), \d+\.\d\d s:\n  pass +\d+\.\d\d s  test ", text)
    # Each night's lineage, archived with its report, runs from the drop to the published set
    lineage_run = next(r for r in runs if r.startswith(DAYS[1] + "_"))
    lineage_archive = assert_lineage_reaches_published(p, lineage_run)

    # A source re-delivers an earlier date (drawdowns corrected to 90%); re-running
    # that date restates the figures: a new published set, rows still up to the
    # latest loaded ds, drawn_to_date lower, nothing doubled, the other sources'
    # figures unchanged, and the sets published before stay as they were.
    from program_reporting.tools.simulate.simulator import redeliver_ds

    before = _figures(p.current_db)
    old_sets = {run_id: _figures(db) for run_id, db in runs.items()}
    changed = redeliver_ds("credit_events", DAYS[1], drop=p.drop, seed=7, share=0.2)
    assert changed
    # ... while the per-model status tasks cannot read the build's results: they fail, and
    # the night still publishes and succeeds (they decide nothing)
    unreadable = {"PROGRAM_REPORTING_FAILPOINT": "dbt_models.read", "PROGRAM_REPORTING_FAILPOINT_ACTION": "error"}
    proc = run_cli("--ds", DAYS[1], "--no-bi-refresh", env=unreadable)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "WARNING" not in proc.stdout  # the Airflow run succeeded
    rerun_night = nights()[1]  # `airflow dags test` runs the date again as the same Airflow run
    assert rerun_night["state"] == "success" and rerun_night["tasks"]["end"] == "success"
    assert model_states(rerun_night) == dict.fromkeys(MODEL_TASKS, "failed")
    runs_after = published_runs(p)
    assert len(runs_after) == 4
    rerun = [r for r in runs_after if r not in runs][0]
    assert rerun.startswith(DAYS[1] + "_")
    assert os.path.samefile(p.current_db, runs_after[rerun])
    assert max_as_of(runs_after[rerun]) == DAYS[-1]
    after = _figures(p.current_db)
    assert len(after) == len(before)
    drawn_before = _column(p, before, "drawn_to_date")
    drawn_after = _column(p, after, "drawn_to_date")
    assert sum(drawn_after) < sum(drawn_before)
    assert _column(p, after, "enrolled_merchants") == _column(p, before, "enrolled_merchants")
    assert _column(p, after, "jobs_current") == _column(p, before, "jobs_current")
    assert {run_id: _figures(db) for run_id, db in runs.items()} == old_sets
    assert_rerun_lineage_is_its_own(p, lineage_run, lineage_archive, rerun)


def assert_lineage_reaches_published(p, run_id: str) -> bytes:
    """reports/<run_id>/lineage/events.jsonl, read as a lineage graph: from each source's
    drop folder through the raw layer, dbt's staging models and the marts to the published
    set. Returns the archive's bytes."""
    # The file transport, by default: every Airflow process appended to the spool.
    assert list((p.tmp / "lineage").glob("events*.jsonl"))
    archive = p.reports / run_id / "lineage" / "events.jsonl"
    events = [json.loads(line) for line in archive.read_text().splitlines()]
    assert [e["eventTime"] for e in events] == sorted(e["eventTime"] for e in events)
    assert archive.stat().st_mode & 0o777 == 0o444

    airflow = {
        e["job"]["name"].split(".", 1)[1] for e in events if e["job"]["name"].startswith("program_reporting_nightly.")
    }
    assert {"plan", *(f"land_{s}" for s in SOURCES), "dbt_build", "stage_audit", "validate", "publish"} <= airflow
    done = {e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"}
    assert "program_reporting_nightly.publish" in done  # up to publishing, its end included

    # dbt's jobs (one per model, one per model's tests) are children of the dbt_build task's run
    dbt_build_runs = {e["run"]["runId"] for e in events if e["job"]["name"] == "program_reporting_nightly.dbt_build"}
    dbt = [e for e in events if e["job"].get("facets", {}).get("jobType", {}).get("integration") == "DBT"]
    assert len(dbt) > 40
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in dbt} == dbt_build_runs
    assert {e["run"]["facets"]["parent"]["job"]["name"] for e in dbt} == {"program_reporting_nightly.dbt_build"}
    assert any(e["job"]["name"].endswith("stg_merchants.build.test") for e in dbt)

    edges = lineage_graph.graph(events)
    current = ("file", str(p.current_db))
    for source in SOURCES:
        found = lineage_graph.path(edges, ("file", str(p.drop / source)), current)
        assert found, f"no lineage from the {source} drop to {current}"
        stages = [lineage_graph.stage(p, d) for d in found]
        assert [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]][:3] == ["drop", "raw", "staging"]
        assert stages.index("marts") > stages.index("staging")
        assert stages[-3:] == ["marts", "audit", "published"], found
        assert found[1] == ("file", str(p.raw / source))
        assert found[2][1] == f"warehouse.main.stg_{source}"
        assert found[-3][1].startswith("warehouse.main.kpi_")

    # The report stays as published: the index's checksums still name its two files.
    entry = next(json.loads(line) for line in (p.reports / "index.jsonl").read_text().splitlines() if run_id in line)
    assert entry["run_id"] == run_id
    for name in ("report.json", "report.html"):
        digest = hashlib.sha256((p.reports / run_id / name).read_bytes()).hexdigest()
        assert entry[f"{name.replace('.', '_')}_sha256"] == digest
    return archive.read_bytes()


def assert_rerun_lineage_is_its_own(p, first_run: str, first_archive: bytes, rerun: str) -> None:
    """Re-running a date: the provider gives the new run the same OpenLineage run ids (same
    DAG, logical date and clear number); its archive holds its own events only, and the
    first run's archive is as it was."""
    events = [json.loads(line) for line in first_archive.decode().splitlines()]
    airflow_run = json.loads((p.reports / rerun / "report.json").read_text())["airflow_run_id"]
    again = [json.loads(line) for line in (p.reports / rerun / "lineage" / "events.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in again if e["job"]["name"] == "program_reporting_nightly.plan"] == [
        "START",
        "COMPLETE",
    ]
    named = {
        (e["run"]["facets"].get("airflow") or e["run"]["facets"].get("airflowDagRun"))["dagRun"]["run_id"]
        for e in again
        if "airflow" in e["run"]["facets"] or "airflowDagRun" in e["run"]["facets"]
    }
    assert named == {airflow_run}
    assert len([e for e in again if e["eventType"] == "START" and "build.run" in e["job"]["name"]]) == len(
        [e for e in events if e["eventType"] == "START" and "build.run" in e["job"]["name"]]
    )
    assert (p.reports / first_run / "lineage" / "events.jsonl").read_bytes() == first_archive


def _column(p, rows: list[tuple], name: str) -> list:
    con = duckdb.connect(str(p.current_db), read_only=True)
    try:
        cols = [d[0] for d in con.execute("select * from kpi_program_daily limit 0").description]
    finally:
        con.close()
    i = cols.index(name)
    return [r[i] for r in rows]


def _figures(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select * from kpi_program_daily order by all").fetchall()
    finally:
        con.close()


def test_missing_delivery_times_out_names_it_and_publishes_nothing_then_recovers(airflow_paths, tmp_path):
    """A delivery that never comes: the run times out naming it, publishes nothing
    and alerts once (alerts log and e-mail through Airflow's SmtpNotifier); the
    delivery arrives, the same date runs again, publishes, and sends one recovery notice."""
    from helpers.smtp_sink import SmtpSink

    p = airflow_paths
    simulate(p, days=1)
    ds = DAYS[0]
    missing = p.delivery_dir("employment_reports", ds)
    kept = tmp_path / "late"
    shutil.move(missing, kept)
    # What the retention task removes after the report, on a failed night too
    old = time.time() - 100 * 86400
    leftovers = [
        p.tmp / "killed-step-0123456789ab" / "rows.parquet",
        p.landing_failures / "merchants" / "ds=2020-01-01" / "x.json",
    ]
    for f in leftovers:
        f.parent.mkdir(parents=True)
        f.write_text("left over")
        for path in (f, f.parent):
            os.utime(path, (old, old))

    with SmtpSink() as mail:
        t0 = time.monotonic()
        proc = run_cli("--ds", ds, "--wait", "6", env=mail.env())
        elapsed = time.monotonic() - t0
        assert proc.returncode != 0
        line = last_line(proc)
        assert line.startswith(f"NOT PUBLISHED ds={ds}")
        assert f"missing delivery: employment_reports for ds={ds}" in line
        assert str(missing / "_control.json") in line
        assert elapsed < 180  # the shortened timeout, not the 6 h default

        # Nothing published, and the report says withheld, with the same reason.
        assert not p.current_db.exists()
        assert published_runs(p) == {}
        reports = [d for d in p.reports.iterdir() if d.is_dir() and d.name.startswith(ds + "_")]
        assert len(reports) == 1
        report = json.loads((reports[0] / "report.json").read_text())
        assert report["decision"] == "withheld"
        assert "missing delivery: employment_reports" in report["reason"]
        # The failure callback alerted the operators once, pointing at that report.
        alerts = [json.loads(line) for line in (p.home / "alerts.log").read_text().splitlines()]
        assert [a["event"] for a in alerts] == ["nightly_run_failed"]
        assert alerts[0]["report_path"] == str(reports[0] / "report.html")
        assert mail.subjects() == [f"[program-reporting] NOT PUBLISHED ds={ds} (program_reporting_nightly)"]
        assert mail.messages[0]["To"] == "operators@example.org"
        assert str(reports[0] / "report.html") in mail.messages[0].get_body().get_content()

        # No dbt build ran: every per-model task is skipped, and the run stays failed.
        [night] = nights()
        assert night["state"] == "failed" and night["tasks"]["dbt_build"] == "upstream_failed"
        assert model_states(night) == dict.fromkeys(MODEL_TASKS, "skipped")

        # The retention task ran after the report (still there, as above) and removed the old leftovers.
        assert not any(f.parent.exists() for f in leftovers)
        [airflow_log] = (p.home / "airflow" / "logs" / "program-reporting-run").glob(f"{ds}*")
        text = airflow_log.read_text()
        assert "end task task_id=retention" in text and "tmp/killed-step-0123456789ab" in text

        shutil.move(kept, missing)  # the late delivery arrives
        proc = run_cli("--ds", ds, "--wait", "6", env=mail.env())
        assert proc.returncode == 0, last_line(proc)
        alerts = [json.loads(line) for line in (p.home / "alerts.log").read_text().splitlines()]
        assert [a["event"] for a in alerts] == ["nightly_run_failed", "nightly_run_recovered"]
        assert alerts[1]["recovered_runs"] == [alerts[0]["airflow_run_id"]]
        assert mail.subjects()[1:] == [f"[program-reporting] recovered: ds={ds} published (program_reporting_nightly)"]


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def indexed(p) -> list[str]:
    index = p.reports / "index.jsonl"
    return [json.loads(line)["run_id"] for line in index.read_text().splitlines()] if index.exists() else []


def assert_has_its_report(p, run_id: str) -> None:
    """A published run's report names it and the set's checksum, with the landed and mart checks."""
    report = json.loads((p.reports / run_id / "report.json").read_text())
    manifest = json.loads((p.runs / run_id / "manifest.json").read_text())
    assert report["run_id"] == run_id and report["decision"] == "published"
    assert report["published_sha256"] == manifest["sha256"] == sha256(p.runs / run_id / "kpi.duckdb")
    assert manifest["report"]["report_json_sha256"] == sha256(p.reports / run_id / "report.json")
    assert [g["stage"] for g in report["gates"]] == ["landed", "marts"]


def failpoint(name: str, marker: Path) -> dict:
    return {"PROGRAM_REPORTING_FAILPOINT": name, "PROGRAM_REPORTING_FAILPOINT_MARKER": str(marker)}


def test_a_ppp_night_runs_on_new_york_time_and_waits_for_its_delivery(airflow_paths, tmp_path):
    """PPP-2020's calendar is America/New_York (programs.csv): its night is the DAG
    program_reporting_nightly__america_new_york, whose run for ds is dated 02:00 New York
    time the next day. Its credit events arrive while the night waits for them."""
    from program_reporting.tools.simulate.simulator import simulate as sim

    p = airflow_paths
    ds = "2020-06-02"
    sim(
        start=dt.date(2020, 6, 2),
        days=1,
        merchants=150,
        seed=3,
        drop=p.drop,
        programs=("PPP-2020",),
        bad_row_share=0.0,
        progress=False,
    )
    late = p.delivery_dir("credit_events", ds)
    kept = tmp_path / "late"
    shutil.move(late, kept)
    proc = subprocess.Popen(
        [CLI, "run", "--program", "PPP-2020", "--ds", ds, "--wait", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log_dir = p.home / "airflow" / "logs" / "program-reporting-run"
    waited = time.monotonic() + 300
    while time.monotonic() < waited:  # the night is waiting for the credit events
        logs = list(log_dir.glob(f"{ds}_*.log")) if log_dir.exists() else []
        if logs and "credit_events delivery for ds=2020-06-02" in logs[0].read_text(errors="replace"):
            break
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(1)
    shutil.move(kept, late)  # the source delivers, late in New York's night
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    [log_file] = log_dir.glob(f"{ds}_*.log")
    text = log_file.read_text(errors="replace")
    assert "program_reporting_nightly__america_new_york" in text
    assert "2020-06-03T06:00:00+00:00" in text or "2020-06-03 06:00:00+00:00" in text  # 02:00 EDT
    assert "not there yet" in text  # it waited
    con = duckdb.connect(str(p.current_db), read_only=True)
    try:
        programs = con.execute(
            "SELECT DISTINCT program_code FROM kpi_program_daily WHERE as_of_date = DATE '2020-06-02'"
        ).fetchall()
    finally:
        con.close()
    assert programs == [("PPP-2020",)]


def test_a_published_set_always_has_its_report(airflow_paths, tmp_path):
    """The publish task killed between its report and the swap, then between the
    swap and the index entry (the whole `airflow dags test` process, SIGKILL)."""
    p = airflow_paths
    simulate(p, days=2, merchants=60)
    ds = DAYS[0]

    # 1. killed once the report is fixed, before the set moves: nothing published
    marker = tmp_path / "killed-1"
    proc = run_cli("--ds", ds, "--no-bi-refresh", env=failpoint("publish.report_written", marker))
    assert marker.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 1
    line = last_line(proc)
    assert line.startswith(f"NOT PUBLISHED ds={ds}: ") and "killed by SIGKILL during task publish" in line, line
    assert not p.current_db.exists() and published_runs(p) == {}
    assert not [d for d in p.reports.iterdir() if d.name.startswith(ds)]  # no report claims a publication

    # 2. killed after the swap, before the index entry: published, with its report; exit 0 and a warning
    marker = tmp_path / "killed-2"
    proc = run_cli("--ds", ds, "--no-bi-refresh", env=failpoint("publish.before_index", marker))
    assert marker.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    [(first, db)] = published_runs(p).items()
    assert os.path.samefile(p.current_db, db)
    assert_has_its_report(p, first)
    assert first not in indexed(p)
    assert last_line(proc).startswith("published 1 date(s)")
    warning = proc.stdout.strip().splitlines()[-2]
    assert warning.startswith(f"WARNING ds={ds}: run {first} was published with its report"), warning
    assert "killed by SIGKILL during task publish" in warning and "not in reports/index.jsonl yet" in warning

    # 3. the next night publishes, and the index lists both; the killed publication left nothing
    proc = run_cli("--ds", DAYS[1], "--no-bi-refresh")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "WARNING" not in proc.stdout
    runs = published_runs(p)
    second = next(r for r in runs if r != first)
    assert os.path.samefile(p.current_db, runs[second])
    assert_has_its_report(p, second)
    assert indexed(p) == [first, second]
    assert {x.name for x in p.reports.glob(".*")} <= {".index.lock"}
