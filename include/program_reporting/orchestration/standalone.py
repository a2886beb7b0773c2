"""Start Airflow (standalone: scheduler, DAG processor, triggerer, API server and UI)
with the project's DAGs and settings, on http://localhost:8080.

Uses the same AIRFLOW_HOME as `program-reporting run` (default
$PROGRAM_REPORTING_HOME/airflow, SQLite, LocalExecutor), so the runs made by
`make run` are in the UI. The BI refresh follows the nightly publishes.

The nightly DAGs are left unpaused when the drop holds deliveries (a source
is delivering: each DAG runs at 02:00 in its time zone), paused otherwise
(they would only wait for deliveries that are not coming); the startup
message says which, and gives the one command that unpauses them.

Ctrl-C (or SIGTERM) stops everything: Airflow standalone ignores SIGTERM
itself, so it runs in its own process group and the whole group is ended
(SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from program_reporting.core.contract import CONTROL_FILE
from program_reporting.core.settings import SOURCES, paths
from program_reporting.orchestration.airflow_env import airflow_bin, airflow_env, ensure_db
from program_reporting.orchestration.business_date import calendars

log = logging.getLogger(__name__)

PASSWORD_FILES = ("simple_auth_manager_passwords.json.generated", "standalone_admin_password.txt")


def serve(port: int = 8080, grace: float = 20.0) -> int:
    """Run `airflow standalone` in its own process group until Ctrl-C or SIGTERM, then end the group."""
    env = airflow_env()
    env["AIRFLOW__API__PORT"] = str(port)
    env.setdefault("AIRFLOW__API__BASE_URL", f"http://localhost:{port}")
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://localhost:{port}/execution/"
    home = Path(env["AIRFLOW_HOME"])
    ensure_db(env)
    print(set_nightly_state(env), flush=True)
    proc = subprocess.Popen([airflow_bin(), "standalone"], env=env, start_new_session=True)
    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"Airflow is starting (AIRFLOW_HOME={home}, process group {proc.pid}).", flush=True)
    print(f"UI: http://localhost:{port}   Ctrl-C stops it.", flush=True)
    try:
        shown = False
        while proc.poll() is None:
            if not shown:
                login = read_login(home)
                if login:
                    print(f"Login: {login}", flush=True)
                    shown = True
            time.sleep(1)
        return proc.returncode or 0
    except KeyboardInterrupt:
        print("stopping Airflow ...", flush=True)
        return 0
    finally:
        stop_group(proc, grace=grace)


NIGHTLY_DAGS = "^program_reporting_nightly"  # every calendar's nightly DAG (business_date.calendars)


def delivered_dates() -> list[str]:
    """The business dates the drop holds a finished delivery for (any source)."""
    drop = paths().drop
    dates = {
        control.parent.name.removeprefix("ds=")
        for source in SOURCES
        for control in (drop / source).glob(f"ds=*/{CONTROL_FILE}")
    }
    return sorted(dates)


def unpause_command(env: dict[str, str]) -> str:
    return (
        f"AIRFLOW_HOME={env['AIRFLOW_HOME']} {airflow_bin()} dags unpause --treat-dag-id-as-regex -y '{NIGHTLY_DAGS}'"
    )


def set_nightly_state(env: dict[str, str], now: dt.datetime | None = None) -> str:
    """Unpause the nightly DAGs when the drop holds deliveries for the nights the schedule
    runs, pause them otherwise (in the metadata database, and for DAGs the DAG processor
    has yet to create); returns the message that says which, why, and how to change it.

    Unpaused, a DAG at once runs its most recent night (catchup=False runs the latest
    interval), which waits for that night's deliveries: only worth it when the source
    delivers those. Deliveries of past dates only (the demo's week of 2020) are a
    backfill, not a schedule."""
    dates = delivered_dates()
    nights = {c.dag_id: c.latest_night(now) for c in calendars()}
    live = bool(dates) and dates[-1] >= min(nights.values())
    env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = str(not live)
    # Fails harmlessly ("no DAG matched") on a new database: creation then sets the state.
    subprocess.run(
        [airflow_bin(), "dags", "unpause" if live else "pause", "--treat-dag-id-as-regex", "-y", NIGHTLY_DAGS],
        env=env,
        capture_output=True,
        text=True,
    )
    dag_ids = ", ".join(nights)
    held = f"holds deliveries for {len(dates)} date(s), {dates[0]} to {dates[-1]}" if dates else "holds no delivery yet"
    if live:
        return (
            f"Nightly DAGs unpaused ({dag_ids}): the drop {paths().drop} {held}. Each runs at 02:00 "
            "in its time zone for the day before, starting now with its latest night ("
            + ", ".join(f"{d}: ds {ds}" for d, ds in nights.items())
            + "). Stop them with: "
            + unpause_command(env).replace(" unpause ", " pause ")
        )
    past = (
        f" Past dates are a backfill: program-reporting backfill --from {dates[0]} --to {dates[-1]}"
        " (docs/orchestration.md#backfills)."
        if dates
        else ""
    )
    return (
        f"Nightly DAGs paused ({dag_ids}): the drop {paths().drop} {held}, none for the latest night "
        f"(ds {min(nights.values())}) or later, so a night would only wait for deliveries.{past} "
        f"Start the schedule with: {unpause_command(env)}  (or the toggle in the UI)"
    )


def read_login(home: Path) -> str | None:
    """The admin login standalone generated (simple auth manager), once written."""
    for name in PASSWORD_FILES:
        f = home / name
        if f.exists() and f.stat().st_size:
            text = f.read_text(encoding="utf-8").strip()
            try:
                import json

                users = json.loads(text)
                if isinstance(users, dict) and users:
                    user, password = next(iter(users.items()))
                    return f"user {user}, password {password} (from {f})"
            except ValueError:
                pass
            return f"{text} (from {f})"
    return None


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """End the whole process group of `proc`: SIGTERM, then SIGKILL after `grace` seconds.

    Returns once no live process of the group is left."""
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    if pgid == os.getpgrp():  # never signal our own group
        proc.terminate()
        return
    _signal_group(pgid, signal.SIGTERM)
    if not _wait_gone(proc, pgid, grace):
        log.warning("Airflow did not stop within %.0f s; killing process group %d", grace, pgid)
        _signal_group(pgid, signal.SIGKILL)
        if not _wait_gone(proc, pgid, 10.0):
            log.error("processes of group %d are still running: %s", pgid, group_members(pgid))


def _wait_gone(proc: subprocess.Popen, pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        proc.poll()  # reap our own child
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.3)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # not Linux: fall back to "does the group exist"
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces, so split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members
