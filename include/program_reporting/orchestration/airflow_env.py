"""The environment every Airflow process of this project runs with.

One place for Airflow's configuration, so that `program-reporting run`,
`program-reporting airflow`, the tests and the benchmarks all start Airflow
the same way, and a fresh clone needs no set-up: AIRFLOW_HOME defaults to
`<PROGRAM_REPORTING_HOME>/airflow` (SQLite metadata database, LocalExecutor,
the repository's `dags/` folder, no example DAGs, nothing phoned home), and
the metadata database is migrated on first use.

Settings of our own (environment variables):

- `AIRFLOW_HOME`: honoured when set; default `<PROGRAM_REPORTING_HOME>/airflow`.
- `PROGRAM_REPORTING_SENSOR_POKE_SECONDS` (default 300) and
  `PROGRAM_REPORTING_SENSOR_TIMEOUT_SECONDS` (default 21600 = 6 h): how often
  and how long the nightly DAG waits for each source's `_control.json`.
- `PROGRAM_REPORTING_SMTP_*`: the alerts' mail server, passed to Airflow as
  the connection `program_reporting_smtp` (see alerts.py).
- `PROGRAM_REPORTING_OPENLINEAGE_URL`: an OpenLineage server (Marquez) that
  receives the runs' lineage events as well as the file (lineage.py).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from program_reporting.core.settings import REPO_ROOT, paths
from program_reporting.orchestration import lineage
from program_reporting.orchestration.business_date import NIGHTLY_DAG_ID  # noqa: F401 - the DAG `run` uses

log = logging.getLogger(__name__)

DAGS_FOLDER = REPO_ROOT / "dags"
BI_REFRESH_DAG_ID = "program_reporting_bi_refresh"

# One slot: the nightly tasks that read or write the warehouse, across every calendar's DAG.
WAREHOUSE_POOL = "program_reporting_warehouse"
# `airflow <these>` creates it; every installation runs it after `airflow db migrate`
# (ensure_db here, the compose file's airflow-init, the Celery test's deployment).
CREATE_WAREHOUSE_POOL = [
    "pools",
    "set",
    WAREHOUSE_POOL,
    "1",
    "the warehouse's single writer: one night's step at a time",
]

SENSOR_POKE_ENV = "PROGRAM_REPORTING_SENSOR_POKE_SECONDS"
SENSOR_TIMEOUT_ENV = "PROGRAM_REPORTING_SENSOR_TIMEOUT_SECONDS"
DEFAULT_SENSOR_POKE_SECONDS = 300.0
DEFAULT_SENSOR_TIMEOUT_SECONDS = 6 * 3600.0

# The alerts' mail server (alerts.py), as the Airflow connection SmtpNotifier reads.
SMTP_CONN_ID = "program_reporting_smtp"
ALERT_EMAILS_ENV = "PROGRAM_REPORTING_ALERT_EMAILS"
ALERT_FROM_ENV = "PROGRAM_REPORTING_ALERT_FROM"
SMTP_ENV = {
    "host": "PROGRAM_REPORTING_SMTP_HOST",
    "port": "PROGRAM_REPORTING_SMTP_PORT",
    "login": "PROGRAM_REPORTING_SMTP_USER",
    "password": "PROGRAM_REPORTING_SMTP_PASSWORD",
    "tls": "PROGRAM_REPORTING_SMTP_TLS",
}

# Telemetry off everywhere: there is no internet, and a pipeline must not call home.
NO_TELEMETRY = {
    "SCARF_ANALYTICS": "false",
    "SCARF_NO_ANALYTICS": "true",  # read by Cosmos' telemetry switch
    "DO_NOT_TRACK": "1",
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
}


def airflow_home() -> Path:
    explicit = os.environ.get("AIRFLOW_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    return paths().home / "airflow"


def airflow_log_folder(env: dict[str, str] | None = None) -> Path:
    """Airflow's logs folder in `env` (default: this process's environment, as
    a task sees it): AIRFLOW__LOGGING__BASE_LOG_FOLDER, else Airflow's own
    default, `$AIRFLOW_HOME/logs`. What `airflow_env()` sets is
    `airflow_log_folder(airflow_env())`."""
    env = os.environ if env is None else env
    folder = env.get("AIRFLOW__LOGGING__BASE_LOG_FOLDER")
    if folder:
        return Path(folder).expanduser()
    return (Path(env["AIRFLOW_HOME"]).expanduser() if env.get("AIRFLOW_HOME") else airflow_home()) / "logs"


def sensor_poke_seconds() -> float:
    return _seconds(SENSOR_POKE_ENV, DEFAULT_SENSOR_POKE_SECONDS)


def sensor_timeout_seconds() -> float:
    return _seconds(SENSOR_TIMEOUT_ENV, DEFAULT_SENSOR_TIMEOUT_SECONDS)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name}={raw!r} is not a number of seconds") from exc
    if value < 0:
        raise ValueError(f"setting {name}={raw!r} must not be negative")
    return value


# Set by `program-reporting run` for the `airflow dags test` it runs (run.py).
DAGS_TEST_ENV = "PROGRAM_REPORTING_AIRFLOW_DAGS_TEST"


def in_dags_test() -> bool:
    """Whether this process runs `airflow dags test` for `program-reporting run`: one
    process, dates in order. Its DAGs carry no deadline there: a date run by hand is past
    its deadline before it starts, and Airflow 3.3.2's dag.test() cannot finish a run of a
    DAG that has one (its DagRun.update_state looks the SDK's DeadlineAlert objects up as
    database ids). And no night waits for an earlier one (nightly.EarlierNightSensor)."""
    return os.environ.get(DAGS_TEST_ENV) == "1"


SQLITE_CONNECT_ARGS_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"  # a longer wait for SQLite's lock


def airflow_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for an Airflow process (CLI, standalone, DagBag in a subprocess).

    Built on `base` (default: this process's environment); the project's
    paths are made absolute so the child sees the same drop and home folders
    whatever its working directory."""
    env = dict(os.environ if base is None else base)
    p = paths()
    home = airflow_home()
    env.update(NO_TELEMETRY)
    env.update(
        {
            "PROGRAM_REPORTING_DROP": str(p.drop),
            "PROGRAM_REPORTING_HOME": str(p.home),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Two cores: a handful of task processes at a time is all a laptop needs.
            "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "4"),
            # New DAGs start paused, as on any Airflow: `make airflow` must not start
            # waiting for today's deliveries before someone asks it to. `run` does not
            # need the scheduler, and the BI refresh is unpaused by `run` (see run.py).
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            SQLITE_CONNECT_ARGS_ENV: "program_reporting.orchestration.sqlite_metadata.CONNECT_ARGS",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            # Let the DAG processor see edited DAG files quickly on a laptop.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": env.get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "30"),
            # Airflow's own children (standalone starts `airflow scheduler` etc.) are
            # found on PATH: put this interpreter's bin/ (the project venv) first.
            "PATH": os.pathsep.join(x for x in (str(Path(sys.executable).parent), env.get("PATH", "")) if x),
            # `program_reporting` is installed into the venv in editable mode; the
            # repository's include/ on the path keeps a plain checkout working too.
            "PYTHONPATH": os.pathsep.join(x for x in (str(REPO_ROOT / "include"), env.get("PYTHONPATH", "")) if x),
        }
    )
    # the mail server of the alerts, as the connection SmtpNotifier reads (alerts.py)
    env.update(smtp_connection_env(env))
    # OpenLineage: every event to a file, and to a lineage server when one is set (lineage.py)
    env.update(lineage.airflow_settings(env, p))
    return env


def alert_sender(environ: dict[str, str]) -> str:
    return environ.get(ALERT_FROM_ENV) or f"program-reporting@{socket.gethostname()}"


def smtp_connection_env(environ: dict[str, str]) -> dict[str, str]:
    """`AIRFLOW_CONN_PROGRAM_REPORTING_SMTP` for an Airflow process, from our settings
    (empty when no mail server is set, or when the operator defined the connection)."""
    host = environ.get(SMTP_ENV["host"], "").strip()
    name = f"AIRFLOW_CONN_{SMTP_CONN_ID.upper()}"
    if not host or name in environ:
        return {}
    tls = environ.get(SMTP_ENV["tls"], "none").strip().lower() or "none"
    if tls not in ("none", "starttls", "ssl"):
        raise ValueError(f"{SMTP_ENV['tls']}={tls!r}: expected none, starttls or ssl")
    port = environ.get(SMTP_ENV["port"], "").strip() or "25"
    if not port.isdigit():
        raise ValueError(f"{SMTP_ENV['port']}={port!r} is not a port number")
    connection = {
        "conn_type": "smtp",
        "host": host,
        "port": int(port),
        "login": environ.get(SMTP_ENV["login"]) or None,
        "password": environ.get(SMTP_ENV["password"]) or None,
        "extra": {
            "disable_ssl": tls != "ssl",
            "disable_tls": tls != "starttls",
            "from_email": alert_sender(environ),
            "timeout": 30,
            "retry_limit": 3,
        },
    }
    return {name: json.dumps(connection)}


def airflow_bin() -> str:
    """The `airflow` console script of the interpreter running us (the project venv)."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def ensure_db(env: dict[str, str] | None = None) -> None:
    """Create or upgrade the metadata database when it is missing or stale.

    `airflow db migrate` is idempotent but takes seconds; a marker holding the
    Airflow version skips it when nothing changed."""
    env = airflow_env() if env is None else env
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    lineage.ensure_spool()  # before the first event: the scheduler's, of a DAG run starting
    from importlib.metadata import version

    marker = home / ".migrated"
    want = f"apache-airflow {version('apache-airflow')}; pool {WAREHOUSE_POOL}"
    if marker.exists() and (home / "airflow.db").exists() and marker.read_text().strip() == want:
        return
    t0 = time.monotonic()
    log.info("migrating the Airflow metadata database in %s", home)
    proc = subprocess.run([airflow_bin(), "db", "migrate"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"`airflow db migrate` failed in {home}:\n{tail}")
    proc = subprocess.run(
        [airflow_bin(), *CREATE_WAREHOUSE_POOL],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"`airflow pools set {WAREHOUSE_POOL}` failed in {home}:\n{proc.stderr[-2000:]}")
    marker.write_text(want + "\n")
    log.info("Airflow metadata database ready (%.1f s)", time.monotonic() - t0)
