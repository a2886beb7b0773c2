"""Backfill plumbing that needs no scheduler: the run dates of business dates, a
backfill's delivery sensor that does not wait, and the nightly DAGs' paused state
that `make airflow` leaves. The scheduler's path end to end: tests/e2e/test_e2e_scheduler.py."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout

from program_reporting.orchestration import nightly, standalone
from program_reporting.orchestration.airflow_env import airflow_env
from program_reporting.orchestration.backfill import backfill_command
from program_reporting.orchestration.business_date import calendar_of_program, calendars, logical_date_for

BIN = Path(sys.executable).parent


def test_backfill_dates_are_the_runs_of_the_business_dates():
    """Airflow's --from-date/--to-date are run (logical) dates: 02:00 local on the day after."""
    shanghai = calendars()[0]
    command = backfill_command("2020-06-01", "2020-06-07", shanghai)
    args = dict(zip(command[3::2], command[4::2]))
    assert command[1:3] == ["backfill", "create"]
    assert args["--dag-id"] == "program_reporting_nightly"
    assert args["--from-date"] == "2020-06-02T02:00:00+08:00"
    assert args["--to-date"] == "2020-06-08T02:00:00+08:00"
    assert args["--max-active-runs"] == "1" and args["--reprocess-behavior"] == "completed"
    new_york = backfill_command("2020-06-01", "2020-06-01", calendar_of_program("PPP-2020"), dry_run=True)
    assert new_york[new_york.index("--dag-id") + 1] == "program_reporting_nightly__america_new_york"
    assert new_york[new_york.index("--from-date") + 1] == "2020-06-02T02:00:00-04:00"
    assert new_york[-1] == "--dry-run"


def context_of(run_type: str, ds: str = "2020-06-02") -> dict:
    pushed: dict = {}
    ti = SimpleNamespace(task_id="wait_for_merchants", xcom_push=lambda key, value: pushed.__setitem__(key, value))
    logical = logical_date_for(ds, "Asia/Shanghai")  # 02:00 Shanghai the next day
    return {
        "dag_run": SimpleNamespace(run_type=run_type, dag_id="program_reporting_nightly"),
        "logical_date": logical,
        "ti": ti,
        "pushed": pushed,
    }


def sensor() -> nightly.DeliverySensor:
    return nightly.DeliverySensor(task_id="wait_for_merchants", source="merchants", timeout=6 * 3600, mode="reschedule")


def test_a_backfill_night_does_not_wait_for_a_missing_delivery(env_paths):
    context = context_of("backfill")
    started = dt.datetime.now()
    with pytest.raises(AirflowSensorTimeout, match="a backfill does not wait") as raised:
        sensor().execute(context)
    assert (dt.datetime.now() - started).total_seconds() < 5  # not the six hours of a scheduled night
    assert str(env_paths.delivery_dir("merchants", "2020-06-02")) in str(raised.value)
    assert "missing delivery: merchants for ds=2020-06-02" in context["pushed"][nightly.FAILURE_KEY]


def test_a_backfill_night_takes_a_delivery_that_is_in_the_drop(env_paths):
    deliver(env_paths, "merchants", "2020-06-02")
    assert sensor().execute(context_of("backfill")) is None


def test_the_latest_night_is_yesterday_from_two_in_the_morning_local():
    shanghai = calendars()[0]
    assert shanghai.latest_night(dt.datetime(2020, 6, 5, 18, 0, tzinfo=dt.UTC)) == "2020-06-05"  # 02:00 on the 6th
    assert shanghai.latest_night(dt.datetime(2020, 6, 5, 17, 59, tzinfo=dt.UTC)) == "2020-06-04"
    new_york = calendar_of_program("PPP-2020")
    assert new_york.latest_night(dt.datetime(2020, 6, 6, 5, 59, tzinfo=dt.UTC)) == "2020-06-04"  # 01:59 EDT
    assert new_york.latest_night(dt.datetime(2020, 6, 6, 6, 0, tzinfo=dt.UTC)) == "2020-06-05"


def deliver(env_paths, source: str, ds: str) -> None:
    folder = env_paths.delivery_dir(source, ds)
    folder.mkdir(parents=True)
    (folder / "_control.json").write_text("{}")


def test_make_airflow_sets_the_nights_paused_or_not_by_the_drop_and_says_so(env_paths, monkeypatch):
    """Paused with an empty drop, or with past dates only (a backfill, not a schedule),
    with the one command that starts them; unpaused when the latest night's deliveries are there."""
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    env = airflow_env()
    now = dt.datetime(2020, 6, 6, 12, 0, tzinfo=dt.UTC)  # latest nights: ds 2020-06-05 in both zones
    message = standalone.set_nightly_state(env, now)
    assert message.startswith("Nightly DAGs paused (program_reporting_nightly, program_reporting_nightly__")
    assert f"the drop {env_paths.drop} holds no delivery yet" in message
    command = message.split("Start the schedule with: ", 1)[1].split("  (or", 1)[0]
    assert command == standalone.unpause_command(env)
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"
    # the command it gives is one that Airflow accepts
    done = subprocess.run(
        ["bash", "-c", command.replace("unpause", "unpause --help", 1)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0 and "--treat-dag-id-as-regex" in done.stdout

    deliver(env_paths, "credit_events", "2020-06-02")
    deliver(env_paths, "merchants", "2020-06-04")
    message = standalone.set_nightly_state(env, now)
    assert message.startswith("Nightly DAGs paused") and "2 date(s), 2020-06-02 to 2020-06-04" in message
    assert "none for the latest night (ds 2020-06-05)" in message
    assert "program-reporting backfill --from 2020-06-02 --to 2020-06-04" in message

    deliver(env_paths, "merchants", "2020-06-05")
    message = standalone.set_nightly_state(env, now)
    assert message.startswith("Nightly DAGs unpaused") and "3 date(s), 2020-06-02 to 2020-06-05" in message
    assert "program_reporting_nightly: ds 2020-06-05" in message
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"


def flaky_airflow(tmp_path: Path, failures: int, message: str) -> list[str]:
    """A stand-in for `airflow backfill create` that fails `failures` times with `message`."""
    counter = tmp_path / "attempts"
    script = (
        "import pathlib, sys\n"
        f"c = pathlib.Path({str(counter)!r}); n = int(c.read_text()) + 1 if c.exists() else 1; c.write_text(str(n))\n"
        f"if n <= {failures}: sys.stderr.write({message!r}); sys.exit(1)\n"
        "print('Created backfill')\n"
    )
    return [sys.executable, "-c", script]


def attempts(tmp_path: Path) -> int:
    return int((tmp_path / "attempts").read_text())


def test_a_backfill_refused_by_sqlites_lock_is_created_again(tmp_path, monkeypatch, capsys):
    """The scheduler's write makes SQLite refuse the backfill's insert at once (CI, 2026-12-08);
    Airflow removes the half-created backfill, and the command creates it again."""
    import tenacity

    from program_reporting.orchestration import backfill

    monkeypatch.setattr(backfill, "LOCK_WAIT", tenacity.wait_none())
    locked = "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked\n"
    done = backfill.create_through_lock(flaky_airflow(tmp_path, 2, locked), dict(os.environ))
    assert done.returncode == 0 and attempts(tmp_path) == 3
    assert "Created backfill" in capsys.readouterr().out

    (tmp_path / "attempts").unlink()
    done = backfill.create_through_lock(flaky_airflow(tmp_path, 99, locked), dict(os.environ))
    assert done.returncode == 1 and attempts(tmp_path) == backfill.LOCK_ATTEMPTS  # gives up, with Airflow's error
    assert "database is locked" in capsys.readouterr().err

    (tmp_path / "attempts").unlink()
    other = "airflow: Dag with dag_id: 'x' not found\n"
    done = backfill.create_through_lock(flaky_airflow(tmp_path, 1, other), dict(os.environ))
    assert done.returncode == 1 and attempts(tmp_path) == 1  # any other failure is not retried
