"""Run the nightly pipeline for a business date, or a range of dates, through Airflow.

  program-reporting run --ds 2020-06-03
  program-reporting run --from 2020-06-02 --to 2020-06-08

Each date is one run of the DAG `program_reporting_nightly` (with `--program`, the
nightly DAG of that program's time zone), executed by
`airflow dags test` with the project's Airflow environment: the same DAG,
tasks and checks as a scheduled run, without needing a scheduler. The
logical date is the one the schedule gives that business date (02:00
Asia/Shanghai the next day). Dates run in order; the first date that does
not publish stops the range.

After the last published date the BI refresh (`program_reporting_bi_refresh`:
Parquet exports and the KPI brief) runs once, as the scheduler would run it
on the asset events of the publishes.

Re-running a date is safe: every step replaces exactly that date's
partition, and a re-delivered date restates its figures.

Exit status 0: every date passed its checks and was published. Otherwise
nothing was published for the failing date, and the last line says why.
A date counts as published when current.duckdb is its run's set: publishing
puts the run's report in place before that swap, so a published date always
has its report. If the Airflow run fails after the swap (or the report is
not in the index yet), the date is still published: a WARNING line says so
and the exit status stays 0.
Airflow's full output is kept in $AIRFLOW_HOME/logs/program-reporting-run/.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from program_reporting.core.settings import paths
from program_reporting.orchestration.airflow_env import (
    BI_REFRESH_DAG_ID,
    DAGS_TEST_ENV,
    SENSOR_POKE_ENV,
    SENSOR_TIMEOUT_ENV,
    airflow_bin,
    airflow_env,
    ensure_db,
)
from program_reporting.orchestration.business_date import Calendar, calendars, logical_date_for

log = logging.getLogger(__name__)

# A manual run or backfill expects the deliveries to be there already: wait
# briefly, not the six hours a scheduled run gives a late source.
DEFAULT_WAIT_SECONDS = 60.0

_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")
_FAILED = re.compile(r"(AirflowSensorTimeout|AirflowFailException|Error|Exception): (.+)$")


@dataclass
class Outcome:
    ds: str
    published: bool
    reason: str
    run_id: str | None = None
    report: Path | None = None
    seconds: float = 0.0
    log_file: Path | None = None
    warning: str | None = None  # published, but something after the swap did not finish


def run_dates(
    dates: list[str], wait: float | None = None, bi_refresh: bool = True, calendar: Calendar | None = None
) -> list[Outcome]:
    """Run the nightly DAG (of `calendar`; default: the default time zone's) for each date
    in order; stop at the first that does not publish."""
    calendar = calendar or calendars()[0]
    env = airflow_env()
    if wait is not None or not os.environ.get(SENSOR_TIMEOUT_ENV):
        wait = DEFAULT_WAIT_SECONDS if wait is None else wait
        env[SENSOR_TIMEOUT_ENV] = f"{wait:g}"
        if not os.environ.get(SENSOR_POKE_ENV):
            env[SENSOR_POKE_ENV] = f"{max(1.0, min(10.0, wait / 6)):g}"
    outcomes: list[Outcome] = []
    with _exclusive(paths().home):
        ensure_db(env)
        for ds in dates:
            outcome = run_one(ds, env, calendar)
            outcomes.append(outcome)
            if not outcome.published:
                break
        if bi_refresh and any(o.published for o in outcomes):
            refresh_bi(env)
    return outcomes


def run_one(ds: str, env: dict[str, str], calendar: Calendar | None = None) -> Outcome:
    from program_reporting.reporting import report as reporting

    calendar = calendar or calendars()[0]
    logical = logical_date_for(ds, calendar.time_zone).isoformat()
    started = dt.datetime.now(dt.UTC)
    log.info("ds=%s: running %s for logical date %s through Airflow", ds, calendar.dag_id, logical)
    rc, log_file, failures, seconds, running = _airflow_dags_test(calendar.dag_id, logical, env, label=ds)
    true_start_dates(env, calendar.dag_id)
    run_dir = _report_dir(ds, started)
    report = _read_report(run_dir)
    run_id = run_dir.name if run_dir else None
    published = run_id is not None and _is_current(run_id)
    ended = _how_it_ended(rc, running)
    warning = None
    if published:
        reason = "published"
        late = [f"the Airflow run failed after publishing ({ended}; see {log_file})"] if rc != 0 else []
        if run_id not in reporting.indexed_run_ids():
            late.append("its report is not in reports/index.jsonl yet (the next run adds it)")
        if late:
            warning = f"run {run_id} was published with its report {run_dir / 'report.html'}, but " + "; ".join(late)
    else:
        withheld = report.get("reason") if report and report.get("decision") == "withheld" else None
        reason = withheld or "; ".join(failures[-3:]) or f"the Airflow run failed ({ended}); see {log_file}"
        if rc == 0:
            reason = f"the DAG run succeeded but no published set was found for ds={ds} ({reason})"
        elif run_id and (paths().runs / run_id).exists():
            reason = (
                f"run {run_id} reached published/runs/ but current.duckdb was not swapped to it "
                f"({ended}; see {log_file}); run the date again"
            )
    outcome = Outcome(
        ds, published, reason, run_id, run_dir / "report.html" if run_dir else None, seconds, log_file, warning
    )
    (log.info if published else log.error)(
        "ds=%s: %s in %.0f s (run %s, report %s)",
        ds,
        "published" if published else "NOT published",
        seconds,
        run_id,
        outcome.report,
    )
    return outcome


def _is_current(run_id: str) -> bool:
    """The run's set is the one readers get: what "published" means to a caller of `run`."""
    p = paths()
    published_db = p.runs / run_id / "kpi.duckdb"
    return published_db.exists() and p.current_db.exists() and os.path.samefile(p.current_db, published_db)


def _how_it_ended(rc: int, running: str | None) -> str:
    how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}"
    return how + (f" during task {running}" if running else "")


def refresh_bi(env: dict[str, str]) -> bool:
    """Run the BI refresh DAG once, as the scheduler would after the publishes."""
    log.info("running %s (Parquet exports, KPI brief)", BI_REFRESH_DAG_ID)
    rc, log_file, failures, seconds, _ = _airflow_dags_test(BI_REFRESH_DAG_ID, None, env, label="bi_refresh")
    if rc != 0:
        log.error("BI refresh failed (%s); see %s", "; ".join(failures[-2:]) or f"exit {rc}", log_file)
        return False
    log.info("BI refresh done in %.0f s: %s", seconds, paths().exports)
    return True


def _airflow_dags_test(dag_id: str, logical_date: str | None, env: dict[str, str], label: str):
    """Run the DAG; returns its exit status, log file, failure lines, seconds, and
    the task that had started and not ended when it exited (None if none)."""
    log_dir = Path(env["AIRFLOW_HOME"]) / "logs" / "program-reporting-run"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    log_file = log_dir / f"{label}_{stamp}.log"
    cmd = [airflow_bin(), "dags", "test", dag_id] + ([logical_date] if logical_date else [])
    env = {**env, DAGS_TEST_ENV: "1"}  # no deadline alerts on a date run by hand (deadlines.in_dags_test)
    t0 = time.monotonic()
    failures: list[str] = []
    starts: dict[str, float] = {}
    with open(log_file, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            cwd=str(Path(env["AIRFLOW_HOME"])),
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if m := _TASK_START.search(line):
                starts[m.group(1)] = time.monotonic()
            elif m := _TASK_END.search(line):
                task = m.group(1)
                # the per-model status tasks (dbt.<layer>.<model>) are many and quick: the UI shows them
                (log.debug if task.startswith("dbt.") else log.info)(
                    "  %s: %s done (%.1f s)", label, task, time.monotonic() - starts.pop(task, t0)
                )
            elif m := _FAILED.search(line.strip()):
                if "Traceback" not in line and "loc=" not in m.group(2)[:5]:
                    failures.append(f"{m.group(1)}: {m.group(2)}"[:500])
        rc = proc.wait()
    return rc, log_file, failures, time.monotonic() - t0, next(reversed(starts), None)


# `airflow dags test` starts its run "at" the logical date (Airflow 3.3.2 dag.test passes
# start_date=logical_date), so a past date's run would last years in the UI's durations.
# Its true start is its first task's. Only such runs match: no scheduled or backfill run
# starts at its logical date to the microsecond. The columns compared are of one type, so
# the SQL holds on SQLite and PostgreSQL alike.
_TRUE_START = """
UPDATE dag_run SET start_date = (
    SELECT MIN(ti.start_date) FROM task_instance ti
    WHERE ti.dag_id = dag_run.dag_id AND ti.run_id = dag_run.run_id
)
WHERE dag_id = :dag_id AND start_date = logical_date AND EXISTS (
    SELECT 1 FROM task_instance ti
    WHERE ti.dag_id = dag_run.dag_id AND ti.run_id = dag_run.run_id AND ti.start_date IS NOT NULL
)
"""


def true_start_dates(env: dict[str, str], dag_id: str) -> int:
    """Give the DAG's runs made by `airflow dags test` their true start in Airflow's
    metadata database; returns how many were corrected. Never fails a run: a
    database it cannot reach only leaves the UI's durations wrong (logged)."""
    import sqlalchemy

    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if not url:
        return 0
    try:
        from program_reporting.orchestration.sqlite_metadata import CONNECT_ARGS

        engine = sqlalchemy.create_engine(url, connect_args=dict(CONNECT_ARGS) if url.startswith("sqlite") else {})
        try:
            with engine.begin() as connection:
                return connection.execute(sqlalchemy.text(_TRUE_START), {"dag_id": dag_id}).rowcount or 0
        finally:
            engine.dispose()
    except Exception:  # noqa: BLE001 - the figures are published either way
        log.warning("could not correct the start dates of %s's runs in Airflow's database", dag_id, exc_info=True)
        return 0


def _report_dir(ds: str, since: dt.datetime) -> Path | None:
    """The report folder of the run for `ds` that started after `since` (run ids sort by time)."""
    from program_reporting.reporting.report import latest_report

    found = latest_report(ds, "report.json", since=f"{since:%Y%m%dT%H%M%S}Z") or latest_report(
        ds, "report.html", since=f"{since:%Y%m%dT%H%M%S}Z"
    )
    return found.parent if found else None


def _read_report(run_dir: Path | None) -> dict | None:
    if run_dir is None or not (run_dir / "report.json").exists():
        return None
    try:
        return json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _exclusive(home: Path):
    """One run at a time per warehouse home: DuckDB has a single writer."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".run.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(
                f"another run is using {home} (lock {home / '.run.lock'}); try again when it ends"
            ) from None
        yield
