"""Airflow's environment for the production profile: the Celery executor, a
PostgreSQL metadata database, Redis as the broker, and the api-server's task
execution API that Airflow 3 workers report to.

docker-compose.yml sets exactly these settings for its containers (with the
service names as hosts and secrets from .env); the native Celery integration
test (tests/integration/test_celery_integration.py) starts Airflow with `celery_env()`,
and tests/integration/test_celery_integration.py checks that every Airflow and
program-reporting setting of the compose file is set here too, so what the
compose file relies on is what the test exercises.

Start the processes (each in its own process group) with the same
environment: `airflow db migrate`, then `airflow api-server`, `airflow
scheduler`, `airflow dag-processor`, `airflow celery worker` (one or more).
"""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import dataclass, field
from pathlib import Path

from program_reporting.core import settings
from program_reporting.orchestration.airflow_env import DAGS_FOLDER, SQLITE_CONNECT_ARGS_ENV, airflow_env

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


@dataclass(frozen=True)
class CeleryDeployment:
    """Where the pieces of a Celery deployment are. URLs are built by the caller
    from its own settings (compose: service names and .env)."""

    airflow_home: Path
    metadata_db_url: str  # postgresql+psycopg2://user:password@host:port/db
    broker_url: str  # redis://host:port/db
    result_backend: str  # db+postgresql+psycopg2://... (SQLAlchemy 2.1 defaults postgresql:// to psycopg 3)
    api_server_url: str  # http://host:port (the api-server; workers use its /execution/ API)
    jwt_secret: str  # shared by the api-server and the scheduler that signs task tokens
    fernet_key: str
    warehouse: settings.PostgresSettings  # the warehouse and BI serving database
    dags_folder: Path = DAGS_FOLDER
    queue: str = "default"  # the Celery queue tasks go to and workers listen on
    admin_user: str = "admin"
    ports: dict = field(default_factory=dict)  # worker_log_server, scheduler_health: free ports on one machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def celery_env(dep: CeleryDeployment, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every Airflow process of a Celery deployment."""
    env = airflow_env(base)  # telemetry off, the project's paths, PATH and PYTHONPATH
    home = dep.airflow_home
    pg = dep.warehouse
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{dep.admin_user}:admin",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": dep.metadata_db_url,
            "AIRFLOW__CELERY__BROKER_URL": dep.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": dep.result_backend,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": dep.queue,
            "AIRFLOW__CORE__FERNET_KEY": dep.fernet_key,
            "AIRFLOW__API_AUTH__JWT_SECRET": dep.jwt_secret,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": dep.api_server_url.rstrip("/") + "/execution/",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dep.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            # The warehouse, GX validation and the BI serving schema are PostgreSQL.
            "PROGRAM_REPORTING_TARGET": "postgres",
            "PROGRAM_REPORTING_PG_HOST": pg.host,
            "PROGRAM_REPORTING_PG_PORT": str(pg.port),
            "PROGRAM_REPORTING_PG_USER": pg.user,
            "PROGRAM_REPORTING_PG_PASSWORD": pg.password,
            "PROGRAM_REPORTING_PG_DATABASE": pg.database,
        }
    )
    env.pop(SQLITE_CONNECT_ARGS_ENV, None)  # SQLite's, not PostgreSQL's
    if importlib.util.find_spec("asyncpg") is None:
        # Airflow derives an asyncpg URL for its async engine; without asyncpg
        # (not in requirements.lock) that engine is switched off. The task
        # execution API and the scheduler use the sync engine; only some UI
        # endpoints need the async one.
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = ""
    if "worker_log_server" in dep.ports:
        env["AIRFLOW__CELERY__WORKER_LOG_SERVER_PORT"] = str(dep.ports["worker_log_server"])
    if "scheduler_health" in dep.ports:
        env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] = str(dep.ports["scheduler_health"])
    # airflow_env() points SQLite at AIRFLOW_HOME; nothing of it may survive here.
    assert not env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite")
    return env


def processes(api_port: int, queue: str, concurrency: int = 2) -> dict[str, list[str]]:
    """The Airflow commands of a Celery deployment, by compose service name."""
    return {
        "airflow-apiserver": ["api-server", "--port", str(api_port), "--host", "127.0.0.1"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-worker": [
            "celery",
            "worker",
            "--queues",
            queue,
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
        ],
    }
