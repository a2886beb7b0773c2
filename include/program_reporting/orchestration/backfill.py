"""Backfill business dates through Airflow's scheduler: `airflow backfill create` over
the nightly DAG's runs for those dates, one night at a time, in date order.

  program-reporting backfill --from 2020-06-01 --to 2020-06-07
  program-reporting backfill --from 2020-06-01 --to 2020-06-07 --program PPP-2020 --dry-run

A night is dated by its run, not by its business date: the run for ds D is
scheduled at 02:00 on D + 1 in its calendar's time zone (programs.csv), and
Airflow's --from-date/--to-date are those run dates. This command turns
business dates into them, unpauses the DAG (a paused DAG's backfill never
starts; its schedule is then live too), and creates the backfill with
--max-active-runs 1 (--max-active-runs N starts N nights at once, which then
wait for each other) and
--reprocess-behavior completed (a date already run is run again: every step
replaces its partition). It prints the `airflow backfill create` command it
runs, for use on any Airflow (or the UI's backfill form, with the same dates).

The scheduler of `make airflow` (or of the production deployment) runs the
nights exactly as the schedule does. A backfill's night does not wait for
deliveries: a past date's delivery is in the drop, or the night fails at once
naming it. Nights publish in date order whatever --max-active-runs the UI is
given (wait_for_earlier_night). Progress: the UI's Backfill view, or
`airflow dags list-runs program_reporting_nightly`.

`program-reporting run --from --to` is the fast path to the same published
figures, without a scheduler.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from zoneinfo import ZoneInfo

import tenacity

from program_reporting.core.settings import dates_between
from program_reporting.orchestration.airflow_env import airflow_bin, airflow_env, ensure_db
from program_reporting.orchestration.business_date import Calendar, calendars, logical_date_for

log = logging.getLogger(__name__)


def backfill_command(
    first_ds: str, last_ds: str, calendar: Calendar, dry_run: bool = False, max_active_runs: int = 1
) -> list[str]:
    """The `airflow backfill create` command for business dates first_ds..last_ds."""
    dates = dates_between(first_ds, last_ds)
    return [
        airflow_bin(),
        "backfill",
        "create",
        "--dag-id",
        calendar.dag_id,
        "--from-date",
        run_date(dates[0], calendar),
        "--to-date",
        run_date(dates[-1], calendar),
        "--max-active-runs",
        str(max_active_runs),
        "--reprocess-behavior",
        "completed",
        *(["--dry-run"] if dry_run else []),
    ]


def run_date(ds: str, calendar: Calendar) -> str:
    """The logical date of ds's night, in the calendar's own time (as the UI's form shows it)."""
    return logical_date_for(ds, calendar.time_zone).astimezone(ZoneInfo(calendar.time_zone)).isoformat()


def create(
    first_ds: str, last_ds: str, calendar: Calendar | None = None, dry_run: bool = False, max_active_runs: int = 1
) -> int:
    """Create the backfill (or, with dry_run, list its runs); returns airflow's exit status."""
    calendar = calendar or calendars()[0]
    env = airflow_env()
    ensure_db(env)
    command = backfill_command(first_ds, last_ds, calendar, dry_run, max_active_runs)
    if not dry_run:
        unpause = [airflow_bin(), "dags", "unpause", "-y", calendar.dag_id]
        done = subprocess.run(unpause, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            log.error(
                "could not unpause %s (has Airflow's DAG processor seen it yet? start `make airflow`): %s",
                calendar.dag_id,
                done.stderr.strip()[-500:],
            )
            return done.returncode
        log.info(
            "%s unpaused (a paused DAG's backfill never starts): its schedule is live too, and its latest "
            "night, ds %s, starts now and waits for its deliveries",
            calendar.dag_id,
            calendar.latest_night(),
        )
    log.info("running: %s", " ".join(command))
    return create_through_lock(command, env).returncode


# SQLite's lock is not always waited for: a transaction that read before it writes gets
# "database is locked" at once when the scheduler is writing (a busy wait could deadlock),
# whatever the connection's timeout. Airflow then deletes the half-created backfill
# (models/backfill.py, _cleanup_partial_backfill), so creating it again is safe.
LOCK_ATTEMPTS = 5
LOCK_WAIT = tenacity.wait_random(min=1, max=5)  # apart, so as not to meet the scheduler's next write


class MetadataLocked(RuntimeError):
    pass


def create_through_lock(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `airflow backfill create`, again while SQLite's metadata lock refuses it."""

    def attempt() -> subprocess.CompletedProcess[str]:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        if done.returncode != 0 and "database is locked" in done.stderr + done.stdout:
            raise MetadataLocked(done)
        return done

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(MetadataLocked),
        stop=tenacity.stop_after_attempt(LOCK_ATTEMPTS),
        wait=LOCK_WAIT,
        before_sleep=lambda state: log.warning(
            "Airflow's metadata database was locked by the scheduler (attempt %d of %d): creating the backfill again",
            state.attempt_number,
            LOCK_ATTEMPTS,
        ),
        retry_error_callback=lambda state: state.outcome.exception().args[0],
    )
    return retrying(attempt)
