"""Celery for real: an Airflow api-server, scheduler, dag-processor and Celery
worker on this machine, against a fresh PostgreSQL metadata database and
Redis, run `program_reporting_nightly` for a simulated date; the run must
succeed and its KPI tables must be published (files and the PostgreSQL
serving schema). Every process started here runs in its own process group,
and every group is ended in a `finally`.

The environment is program_reporting.orchestration.celery_env's, which carries the settings
of docker-compose.yml (checked below)."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg2
import pytest
import yaml

from program_reporting.core import settings
from program_reporting.orchestration.airflow_env import CREATE_WAREHOUSE_POOL, NIGHTLY_DAG_ID, airflow_bin
from program_reporting.orchestration.business_date import logical_date_for
from program_reporting.orchestration.celery_env import CeleryDeployment, celery_env, free_port, processes
from program_reporting.postgres.production import init_warehouse

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e, pytest.mark.slow]

DS = "2020-06-02"
# A safety net, not a speed goal (those live in bench/): the run is one Celery task per dbt model,
# and under `make test`'s parallel workers it has needed more than 180 s.
RUN_TIMEOUT = 600  # seconds for the DAG run once triggered
START_TIMEOUT = 90  # seconds for the api-server and the DAG to appear


def _pg_admin():
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


@pytest.fixture
def metadata_db(pg_database):
    """A fresh Airflow metadata database for this test run (next to the warehouse one)."""
    name = f"pr_airflow_{uuid.uuid4().hex[:10]}"
    admin = _pg_admin()
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


class Cluster:
    """The Airflow processes of one Celery deployment, each in its own process group."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def airflow(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [airflow_bin(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def start(self, name: str, args: list[str]) -> None:
        out = open(self.logs / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            [airflow_bin(), *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        f = self.logs / f"{name}.log"
        return "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) if f.exists() else ""

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs.values():
            try:  # the whole group: Celery's forked pool and Airflow's task supervisors too
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


def _wait(what: str, condition, timeout: float, cluster: Cluster, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster.check_alive()
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}\n"
        + "\n".join(f"--- {n}\n{cluster.tail(n)}" for n in cluster.procs)
    )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _api_token(api: str, dep: CeleryDeployment) -> str:
    """Log in as the compose file's admin user (SimpleAuthManager's generated password)."""
    passwords = json.loads((dep.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
    body = {"username": dep.admin_user, "password": passwords[dep.admin_user]}
    return _api(api, None, "POST", "/auth/token", body)["access_token"]


def _api(api: str, token: str | None, method: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        api + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from exc


def _meta_query(db: str, query: str, params=()):
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    except psycopg2.errors.UndefinedTable:
        return []
    finally:
        conn.close()


def _deployment(tmp_path: Path, metadata_db: str, redis_url: str, dags_folder: Path) -> tuple[CeleryDeployment, int]:
    api_port = free_port()
    pg = settings.postgres()  # the warehouse database of pg_database
    meta = f"postgres@127.0.0.1:5432/{metadata_db}"
    dep = CeleryDeployment(
        airflow_home=tmp_path / "airflow",
        metadata_db_url=f"postgresql+psycopg2://{meta}",
        broker_url=redis_url,
        result_backend=f"db+postgresql+psycopg2://{meta}",
        api_server_url=f"http://127.0.0.1:{api_port}",
        jwt_secret=secrets.token_urlsafe(32),
        fernet_key=__import__("cryptography.fernet", fromlist=["Fernet"]).Fernet.generate_key().decode(),
        warehouse=pg,
        dags_folder=dags_folder,
        queue=f"pr-test-{uuid.uuid4().hex[:8]}",  # a shared Redis never hands our tasks to another worker
        ports={"worker_log_server": free_port(), "scheduler_health": free_port()},
    )
    return dep, api_port


def test_compose_settings_are_the_ones_exercised_here(tmp_path):
    compose = yaml.safe_load((settings.REPO_ROOT / "docker-compose.yml").read_text())
    compose_env = compose["x-airflow-common"]["environment"]
    dep = CeleryDeployment(
        airflow_home=tmp_path,
        metadata_db_url="postgresql+psycopg2://u:p@h:5432/airflow",
        broker_url="redis://h:6379/0",
        result_backend="db+postgresql+psycopg2://u:p@h:5432/airflow",
        api_server_url="http://h:8080",
        jwt_secret="s",
        fernet_key="k",
        warehouse=settings.PostgresSettings("h", 5432, "u", "p", "warehouse"),
    )
    env = celery_env(dep, base={})
    for name, _value in compose_env.items():
        if name.startswith(("AIRFLOW__", "PROGRAM_REPORTING_")) and name not in (
            "PROGRAM_REPORTING_DROP",
            "PROGRAM_REPORTING_HOME",
        ):
            assert name in env, f"docker-compose.yml sets {name}, the Celery test does not exercise it"
    for name in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__AUTH_MANAGER",
        "PROGRAM_REPORTING_TARGET",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
    ):
        assert str(compose_env[name]).lower() == env[name].lower(), name
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://h:8080/execution/"
    assert compose_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith(":8080/execution/")


def test_nightly_run_through_celery_postgres_and_redis(
    pg_database, metadata_db, redis_url, env_paths, tmp_path, monkeypatch
):
    t0 = time.monotonic()
    from program_reporting.tools.simulate.simulator import simulate

    init_warehouse()  # what the compose file's airflow-init does
    simulate(start=DS, days=1, merchants=60, seed=11, drop=env_paths.drop, bad_row_share=0.0, progress=False)
    monkeypatch.setenv("PROGRAM_REPORTING_SENSOR_POKE_SECONDS", "2")
    monkeypatch.setenv("PROGRAM_REPORTING_SENSOR_TIMEOUT_SECONDS", "120")
    dep, api_port = _deployment(tmp_path, metadata_db, redis_url, settings.REPO_ROOT / "dags")
    env = celery_env(dep)
    # Only the run triggered here: no scheduled run of "yesterday" (whose
    # deliveries never come) may take the DAG's single active-run slot.
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    cluster = Cluster(env, tmp_path / "logs")
    timings = {}
    try:
        cluster.airflow("db", "migrate", timeout=240)
        cluster.airflow(*CREATE_WAREHOUSE_POOL, timeout=120)  # as the compose file's airflow-init does
        timings["migrate"] = time.monotonic() - t0
        for name, args in processes(api_port, dep.queue).items():
            cluster.start(name, args)
        _wait(
            "the api-server",
            lambda: _http_ok(f"http://127.0.0.1:{api_port}/api/v2/monitor/health"),
            START_TIMEOUT,
            cluster,
        )
        _wait(
            f"{NIGHTLY_DAG_ID} to be parsed",
            lambda: _meta_query(
                metadata_db, "SELECT 1 FROM dag WHERE dag_id = %s AND is_stale = false", (NIGHTLY_DAG_ID,)
            ),
            START_TIMEOUT,
            cluster,
        )
        timings["started"] = time.monotonic() - t0
        logical = logical_date_for(DS).astimezone(dt.UTC).isoformat()
        # Through the api-server's REST API, as an operator or a CI job would.
        api = f"http://127.0.0.1:{api_port}"
        token = _api_token(api, dep)
        _api(api, token, "PATCH", f"/api/v2/dags/{NIGHTLY_DAG_ID}", {"is_paused": False})
        _api(
            api,
            token,
            "POST",
            f"/api/v2/dags/{NIGHTLY_DAG_ID}/dagRuns",
            {"dag_run_id": "celery-it", "logical_date": logical},
        )
        timings["triggered"] = time.monotonic() - t0
        state = _wait(
            "the DAG run to finish",
            lambda: next(
                iter(
                    r[0]
                    for r in _meta_query(
                        metadata_db,
                        "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = 'celery-it'",
                        (NIGHTLY_DAG_ID,),
                    )
                    if r[0] in ("success", "failed")
                ),
                None,
            ),
            RUN_TIMEOUT,
            cluster,
            interval=2,
        )
        timings["run"] = time.monotonic() - t0
        tis = _meta_query(
            metadata_db,
            "SELECT task_id, state, queue, executor, hostname FROM task_instance "
            "WHERE dag_id = %s AND run_id = 'celery-it' ORDER BY task_id",
            (NIGHTLY_DAG_ID,),
        )
        for task_id, started, ended, took in _meta_query(
            metadata_db,
            "SELECT task_id, start_date, end_date, duration FROM task_instance WHERE dag_id = %s "
            "AND run_id = 'celery-it' ORDER BY start_date",
            (NIGHTLY_DAG_ID,),
        ):
            print(
                f"  {task_id:28} {started:%H:%M:%S} -> {ended:%H:%M:%S} {took or 0:6.1f}s"
                if started and ended
                else f"  {task_id:28} not run"
            )
        assert state == "success", f"DAG run {state}: {tis}\n{cluster.tail('airflow-worker', 80)}"
    finally:
        cluster.stop()
    print("timings (s from start):", {k: round(v, 1) for k, v in timings.items()})

    # Every task ran on the Celery worker, from our queue.
    assert tis and all(state == "success" for _, state, _, _, _ in tis), tis
    assert {q for _, _, q, _, _ in tis} == {dep.queue}
    assert "celery" in cluster.logs.joinpath("airflow-worker.log").read_text(errors="replace").lower()
    assert all(p.poll() is not None for p in cluster.procs.values())

    # The KPI tables are published: the DuckDB file and the PostgreSQL serving schema.
    assert env_paths.current_db.exists()
    reader = psycopg2.connect(host="127.0.0.1", port=5432, user=settings.BI_READER_ROLE, dbname=pg_database)
    try:
        with reader.cursor() as cur:
            cur.execute(f"SELECT ds FROM {settings.PUBLISHED_SCHEMA}.run_info")
            assert cur.fetchall() == [(dt.date.fromisoformat(DS),)]
            cur.execute(f"SELECT count(*), max(as_of_date) FROM {settings.PUBLISHED_SCHEMA}.kpi_program_daily")
            count, last = cur.fetchone()
            assert count > 0 and last == dt.date.fromisoformat(DS)
    finally:
        reader.close()
