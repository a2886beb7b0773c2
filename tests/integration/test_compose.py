"""docker-compose.yml cannot run here (no Docker engine), so its structure is
checked by loading it, and every setting it relies on is checked against the
code and against Airflow's own configuration schema."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from program_reporting.core.settings import REPO_ROOT
from program_reporting.postgres.production import secret_problems

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_services_of_a_celery_deployment(compose):
    services = compose["services"]
    assert {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
    } <= set(services)
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-worker"]["command"] == "celery worker"
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_worker_can_be_scaled(compose):
    worker = compose["services"]["airflow-worker"]
    # --scale fails on a fixed container name or a published host port.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_image_is_the_official_airflow_image_with_the_project():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.M)
    assert "requirements.lock" in dockerfile and "pip install --no-cache-dir --no-deps -e ." in dockerfile


def test_executor_broker_and_databases(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["PROGRAM_REPORTING_TARGET"] == "postgres"


def test_every_required_variable_is_in_env_example():
    text = _without_comments(COMPOSE.read_text())
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required, "compose should refuse to start without its secrets"
    missing = required - set(_env_example())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_no_password_in_compose_file():
    text = _without_comments(COMPOSE.read_text())
    # Every password comes from .env through ${...}; none is written here.
    keys = re.findall(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|FERNET_KEY)[A-Z_]*):\s*(.+)$", text, re.M)
    assert keys
    for key, value in keys:
        assert value.strip('"').startswith("${"), f"{key} is written in docker-compose.yml"


def test_placeholder_secrets_refused_outside_the_local_profile():
    example = _env_example()
    problems = secret_problems(example)
    assert any("POSTGRES_PASSWORD" in p for p in problems)
    assert any("AIRFLOW_FERNET_KEY" in p for p in problems)
    assert secret_problems({**example, "PROGRAM_REPORTING_PROFILE": "local"}) == []
    strong = {k: "x9!" * 8 for k in example}
    assert secret_problems({**strong, "PROGRAM_REPORTING_PROFILE": "production"}) == []


def test_check_secrets_command_exits_non_zero_on_placeholders():
    env = {**_env_example(), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "program_reporting.cli", "check-secrets"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "refusing to start: POSTGRES_PASSWORD" in proc.stderr


def test_program_reporting_settings_used_by_compose_are_read_by_the_code(compose):
    env = compose["x-airflow-common"]["environment"]
    code = "\n".join(p.read_text() for p in (REPO_ROOT / "include").rglob("*.py"))
    for name in env:
        if name.startswith("PROGRAM_REPORTING_"):
            assert f'"{name}"' in code, f"{name} is set in docker-compose.yml but no module reads it"


def test_airflow_settings_are_real_airflow_options(compose):
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    ProvidersManager().initialize_providers_configuration()  # the celery provider's options
    options = conf.configuration_description
    env = compose["x-airflow-common"]["environment"]
    for name in env:
        m = re.match(r"AIRFLOW__([A-Z_]+?)__([A-Z_]+)$", name)
        if not m:
            continue
        section, key = m.group(1).lower(), m.group(2).lower()
        if section == "cosmos":  # astronomer-cosmos reads its own section
            continue
        assert key in options.get(section, {}).get("options", {}), f"{name} is not an Airflow configuration option"


def test_airflow_init_creates_the_warehouse_pool(compose):
    """The nightly tasks that touch the warehouse take the one slot of this pool; a
    deployment without it would never schedule them."""
    from program_reporting.orchestration.airflow_env import CREATE_WAREHOUSE_POOL

    init = " ".join(compose["services"]["airflow-init"]["command"])
    assert "airflow pools set program_reporting_warehouse 1" in init
    assert CREATE_WAREHOUSE_POOL[:4] == ["pools", "set", "program_reporting_warehouse", "1"]
