"""Start Airflow (standalone: scheduler, DAG processor, triggerer, API server and UI)
with the project's DAGs and settings, on http://localhost:8080.

Uses the same AIRFLOW_HOME as `program-reporting run` (default
$PROGRAM_REPORTING_HOME/airflow, SQLite, LocalExecutor), so the runs made by
`make run` are in the UI. The nightly DAG starts paused (unpause it to let it
run at 02:00 Asia/Shanghai); the BI refresh follows its publishes.

Ctrl-C (or SIGTERM) stops everything: Airflow standalone ignores SIGTERM
itself, so it runs in its own process group and the whole group is ended
(SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from program_reporting.orchestration.airflow_env import airflow_bin, airflow_env, ensure_db

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
