"""Apache Superset on the published KPIs: the "Program KPIs" dashboard (what `make bi` runs).

  PROGRAM_REPORTING_BI_ADMIN_PASSWORD=... program-reporting bi

1. Superset's own virtual environment, .venv-bi/, from bi/requirements-bi.lock (Superset
   6.1 pins pandas 2.1 and SQLAlchemy 1.4, which cannot share .venv/ with Airflow);
   created once, again only when the lock changes. Packages come from the package index
   at install time; nothing is downloaded while it runs.
2. Its metadata, a SQLite database under <home>/bi/ (bi/superset_config.py), migrated
   and given its roles; the secret key PROGRAM_REPORTING_BI_SECRET_KEY, or one generated
   once into <home>/bi/secret_key (mode 0600).
3. The admin PROGRAM_REPORTING_BI_ADMIN_USER (default admin) with the password
   PROGRAM_REPORTING_BI_ADMIN_PASSWORD, which has no default: without it nothing starts.
4. The bundle of bi/bundle/ (bi.bundle): the published DuckDB file, read-only, and the
   PostgreSQL serving schema as bi_reader; the three published tables of each, with
   metrics generated from the dbt semantic layer; the dashboard "Program KPIs"; the
   role "KPI Viewer", which reads it and nothing else.
5. Superset itself (gunicorn) on 127.0.0.1:PROGRAM_REPORTING_BI_PORT (default 8088), in
   a process group of its own: Ctrl-C or SIGTERM ends the whole group. Its log:
   <home>/bi/superset.log.

Needs a published set (<home>/published/current.duckdb: `make run` makes one)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from program_reporting.bi import bundle as bundles
from program_reporting.core import settings
from program_reporting.warehouse.semantic import SEMANTIC_DIR

BI_DIR = settings.REPO_ROOT / "bi"
VENV = settings.REPO_ROOT / ".venv-bi"
LOCK = BI_DIR / "requirements-bi.lock"
CONFIG = BI_DIR / "superset_config.py"
SETUP_SCRIPT = BI_DIR / "superset_setup.py"
VIEWER_ROLE = "KPI Viewer"


class BiError(RuntimeError):
    """Superset could not be set up or started; the message says why and what to do."""


# --- 1. the virtual environment --------------------------------------------------------


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV, lock: Path = LOCK, log=print) -> Path:
    """.venv-bi/ with exactly the lock's packages; created or synced only when the lock
    changed since (its SHA-256 is kept in .venv-bi/.installed). Returns its python."""
    digest = hashlib.sha256(lock.read_bytes() + PIXEL_PATCH.encode()).hexdigest()
    stamp = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    # Two processes (two test workers, a test and `make bi`) must not install at once.
    with open(venv.parent / f"{venv.name}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if venv_python(venv).exists() and stamp.exists() and stamp.read_text().strip() == digest:
            return venv_python(venv)
        started = time.monotonic()
        log(f"creating Superset's virtual environment {venv} from {lock.name} ...")
        if not venv_python(venv).exists():
            _run([_base_python(), "-m", "venv", str(venv)], "create the virtual environment")
        uv = _uv(venv)
        _run(
            [uv, "pip", "sync", "-q", "--python", str(venv_python(venv)), str(lock)],
            f"install {lock.name} (needs the package index, at install time only)",
        )
        patched = disable_telemetry_pixel(venv)
        if not patched:
            log("note: Superset's telemetry pixel was not found in its frontend; the CSP still refuses it")
        stamp.write_text(digest + "\n")
        log(f"Superset's virtual environment is ready ({time.monotonic() - started:.0f}s)")
    return venv_python(venv)


# Superset's frontend, as published on PyPI, renders a telemetry pixel in its menu bar on
# every page (its build-time SCARF_ANALYTICS switch is not in the wheel). Our
# Content-Security-Policy (bi/superset_config.py) refuses it, so no request leaves, but the
# refusal is a console error on every page. So the pixel's address, a template literal in
# one asset, is replaced at install time by an empty 1x1 image: nothing to load, nothing
# refused. The stamp's digest includes this name, so a changed patch re-runs.
PIXEL_PATCH = "telemetry-pixel-v1"
_PIXEL = re.compile(r"`https://apachesuperset\.gateway\.scarf\.sh/pixel/[^`]*`")
_EMPTY_IMAGE = '"data:image/gif;base64,R0lGODlhAQABAAAAACw="'


def disable_telemetry_pixel(venv: Path = VENV) -> int:
    """Replace the telemetry pixel's address in the installed frontend; returns how many
    asset files held it (0 when none does: a later Superset without it, or patched already)."""
    patched = 0
    for asset in (venv / "lib").glob("python3*/site-packages/superset/static/assets/*.js"):
        text = asset.read_text(encoding="utf-8", errors="surrogateescape")
        if "apachesuperset.gateway.scarf.sh" not in text:
            continue
        new = _PIXEL.sub(_EMPTY_IMAGE, text)
        if new != text:
            asset.write_text(new, encoding="utf-8", errors="surrogateescape")
            patched += 1
    return patched


def _base_python() -> str:
    # The interpreter .venv/ was made from (python3.11): a venv's python would do too,
    # but the base one keeps .venv-bi/ independent of .venv/.
    return getattr(sys, "_base_executable", None) or sys.executable


def _uv(venv: Path) -> str:
    """uv: beside this interpreter (.venv/bin/uv, which `make venv` installs), on PATH,
    or installed into .venv-bi/ with pip."""
    for candidate in (Path(sys.executable).parent / "uv", shutil.which("uv"), venv / "bin" / "uv"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    _run([str(venv_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check", "uv"], "install uv")
    return str(venv / "bin" / "uv")


def _run(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BiError(f"could not {what}: {' '.join(command)} exited {proc.returncode}\n{proc.stderr[-3000:]}")


# --- 2.-4. the metadata, the admin, the bundle ------------------------------------------


def superset_env(paths: settings.Paths) -> dict[str, str]:
    """The environment of every Superset process: its configuration file and home, and
    nothing of .venv/'s Python path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        SUPERSET_CONFIG_PATH=str(CONFIG),
        PROGRAM_REPORTING_BI_HOME=str(paths.bi.resolve()),
        FLASK_APP="superset.app:create_app()",
        SCARF_ANALYTICS="false",
        DO_NOT_TRACK="1",
    )
    return env


def ensure_secret_key(paths: settings.Paths) -> None:
    """<home>/bi/secret_key, generated once (0600), unless PROGRAM_REPORTING_BI_SECRET_KEY
    is set. Kept: Superset encrypts the stored bi_reader password with it."""
    paths.bi.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.bi, 0o700)
    if os.environ.get("PROGRAM_REPORTING_BI_SECRET_KEY"):
        return
    key_file = paths.bi / "secret_key"
    with contextlib.suppress(FileExistsError):
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")


@dataclass
class Setup:
    """What superset_setup.py reports: the dashboard, its charts, datasets and databases."""

    dashboard_id: int
    dashboard_url: str
    charts: dict[str, int]
    datasets: dict[str, int]
    databases: dict[str, int]
    seconds: float
    timings: dict = field(default_factory=dict)


def setup(
    admin_password: str,
    admin_user: str | None = None,
    paths: settings.Paths | None = None,
    semantic_dir: Path = SEMANTIC_DIR,
    python: Path | None = None,
    target: str | None = None,
) -> Setup:
    """Metadata, roles, admin and the bundle (steps 2-4). `target`: the database the
    datasets read, `duckdb` or `postgres` (default PROGRAM_REPORTING_TARGET). Run it
    before the server starts; run again while it serves, it re-imports the bundle (the
    metadata is migrated already)."""
    paths = paths or settings.paths()
    if not paths.current_db.exists():
        raise BiError(
            f"no published set at {paths.current_db}: the dashboard reads it. "
            "Run `make run` (or a nightly run) first, or point PROGRAM_REPORTING_HOME at a home that has one."
        )
    ensure_secret_key(paths)
    bi_reader_password = os.environ.get("PROGRAM_REPORTING_BI_READER_PASSWORD") or None
    built = bundles.build(semantic_dir=semantic_dir, paths=paths, target=target, bi_reader_password=bi_reader_password)
    zip_path = paths.bi / "bundle" / f"{bundles.ROOT}.zip"  # no password inside: kept to look at
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    zip_path.write_bytes(built.zip_bytes())
    request = {
        "admin_user": admin_user or settings.bi_admin_user(),
        "admin_password": admin_password,
        "bundle": str(zip_path),
        "passwords": built.passwords,
        "viewer_role": VIEWER_ROLE,
    }
    proc = subprocess.run(
        [str(python or venv_python()), str(SETUP_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=superset_env(paths),
        cwd=paths.bi,
    )
    (paths.bi / "setup.log").write_text(proc.stderr)
    if proc.returncode != 0:
        raise BiError(
            f"Superset's setup failed (exit {proc.returncode}); {paths.bi / 'setup.log'}:\n{_tail(proc.stderr)}"
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return Setup(
        dashboard_id=result["dashboard_id"],
        dashboard_url=result["dashboard_url"],
        charts=result["charts"],
        datasets=result["datasets"],
        databases=result["databases"],
        seconds=result["seconds"],
        timings=result.get("timings", {}),
    )


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --- 5. the server ----------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self, grace: float = 20.0) -> None:
        stop_group(self.proc, grace)


def start(
    paths: settings.Paths | None = None, port: int | None = None, python: Path | None = None, wait: float = 180.0
) -> Server:
    """Superset under gunicorn on 127.0.0.1:port, in its own process group; returns once
    /health answers. Raises BiError (and leaves nothing running) if it does not."""
    paths = paths or settings.paths()
    port = port or settings.bi_port()
    gunicorn = Path(python or venv_python()).parent / "gunicorn"
    log = paths.bi / "superset.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                str(gunicorn),
                "--bind",
                f"127.0.0.1:{port}",
                # One process, threads for the dashboard's parallel chart requests: the
                # metadata is SQLite, and the charts' queries are small.
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "8",
                "--timeout",
                "120",
                "--limit-request-line",
                "0",
                "--limit-request-field_size",
                "0",
                "superset.app:create_app()",
            ],
            env=superset_env(paths),
            cwd=paths.bi,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop_group(proc)
            raise BiError(f"Superset exited {proc.returncode} while starting; {log}:\n{_tail(log.read_text())}")
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
                if response.status == 200:
                    return server
        time.sleep(0.5)
    stop_group(proc)
    raise BiError(
        f"Superset did not answer on {server.url}/health within {wait:.0f}s; {log}:\n{_tail(log.read_text())}"
    )


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """End the server's whole process group (gunicorn's arbiter and its worker):
    SIGTERM, then SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    # The worker may outlive its arbiter by a moment: the group is gone when killpg fails.
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def serve(admin_password: str, port: int | None = None, semantic_dir: Path = SEMANTIC_DIR, log=print) -> int:
    """Steps 1-5, then wait until Ctrl-C or SIGTERM and end the server's group."""
    started = time.monotonic()
    paths = settings.paths()
    port = port or settings.bi_port()
    python = ensure_venv(log=log)
    log("setting up Superset's metadata, the admin and the Program KPIs bundle ...")
    done = setup(admin_password, paths=paths, semantic_dir=semantic_dir, python=python)
    server = start(paths, port, python)

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        log(f"Superset is up ({time.monotonic() - started:.0f}s from start; process group {server.proc.pid}).")
        log(f"Dashboard: {server.url}{done.dashboard_url}   login: {settings.bi_admin_user()}   Ctrl-C stops it.")
        log(f"Log: {server.log}")
        while server.proc.poll() is None:
            time.sleep(1)
        log(f"Superset exited {server.proc.returncode}; see {server.log}")
        return server.proc.returncode or 1
    except KeyboardInterrupt:
        log("stopping Superset ...")
        return 0
    finally:
        server.stop()
