"""The "Program KPIs" bundle as the import receives it (bi/bundle.py), the BI settings, and
`make bi`'s refusal without an admin password. No Superset here: test_superset.py runs it."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from program_reporting.bi import bundle
from program_reporting.cli import main
from program_reporting.core import settings
from program_reporting.warehouse.semantic import SEMANTIC_DIR, SemanticLayerError

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "semantic"
CHARTS = {
    "Enrolment": ("kpi_segment_daily", ["enrolled_merchants"]),
    "Credit drawn and outstanding": ("kpi_segment_daily", ["drawn_to_date", "outstanding_balance"]),
    "PAR30 and PAR90": ("kpi_program_daily", ["par30_rate", "par90_rate"]),
    "Jobs retained against the target": ("kpi_target_progress", ["target_actual_value", "target_value"]),
    "Interest subsidy cost": ("kpi_segment_daily", ["interest_subsidy_cost_to_date"]),
}


def configs(built: bundle.Bundle, prefix: str) -> dict[str, dict]:
    return {name: built.config(name) for name in built.files if name.startswith(prefix)}


def test_the_bundle_is_an_export_with_the_dashboard_its_charts_and_filters(env_paths):
    built = bundle.build(semantic_dir=FIXTURE, paths=env_paths, target="duckdb")
    with zipfile.ZipFile(io.BytesIO(built.zip_bytes())) as z:
        names = z.namelist()
    assert all(n.startswith(f"{bundle.ROOT}/") for n in names)  # Superset strips one root folder
    assert yaml.safe_load(built.files["metadata.yaml"]) == {
        "version": "1.0.0",
        "type": "Dashboard",
        "timestamp": "2026-12-07T00:00:00+00:00",
    }
    (dashboard,) = configs(built, "dashboards/").values()
    assert dashboard["dashboard_title"] == "Program KPIs" and dashboard["slug"] == bundle.DASHBOARD_SLUG
    datasets = {c["uuid"]: c for c in configs(built, "datasets/").values()}
    charts = {c["slice_name"]: c for c in configs(built, "charts/").values()}
    assert {
        name: (datasets[c["dataset_uuid"]]["table_name"], c["params"]["metrics"]) for name, c in charts.items()
    } == (CHARTS)
    in_layout = {
        v["meta"]["uuid"] for v in dashboard["position"].values() if isinstance(v, dict) and v["type"] == "CHART"
    }
    assert in_layout == {c["uuid"] for c in charts.values()}
    filters = {f["name"]: f for f in dashboard["metadata"]["native_filter_configuration"]}
    assert list(filters) == ["Program", "Region", "Business type", "Size class", "Date"]
    assert filters["Date"]["filterType"] == "filter_time"
    assert [filters[n]["targets"][0]["column"]["name"] for n in list(filters)[:4]] == [
        "program_code",
        "region",
        "business_type",
        "size_class",
    ]
    # Region and segment filters leave out the charts whose tables have no region.
    ids = {
        v["meta"]["sliceName"]: v["meta"]["chartId"]
        for v in dashboard["position"].values()
        if isinstance(v, dict) and v["type"] == "CHART"
    }
    assert sorted(filters["Region"]["scope"]["excluded"]) == sorted(
        [ids["PAR30 and PAR90"], ids["Jobs retained against the target"]]
    )
    assert filters["Program"]["scope"]["excluded"] == [] and filters["Date"]["scope"]["excluded"] == []


def test_databases_come_from_the_settings_and_no_password_goes_into_the_zip(env_paths, monkeypatch):
    monkeypatch.setenv("PROGRAM_REPORTING_PG_HOST", "db.internal")
    monkeypatch.setenv("PROGRAM_REPORTING_PG_PORT", "6543")
    monkeypatch.setenv("PROGRAM_REPORTING_PG_DATABASE", "warehouse")
    built = bundle.build(semantic_dir=FIXTURE, paths=env_paths, target="duckdb", bi_reader_password="s3cret-bi-reader")
    duck = built.config(bundle.DUCKDB_DATABASE)
    assert duck["sqlalchemy_uri"] == f"duckdb:///{env_paths.current_db.resolve()}"
    assert duck["extra"]["engine_params"]["connect_args"] == {"read_only": True}
    pg = built.config(bundle.POSTGRES_DATABASE)
    assert pg["sqlalchemy_uri"] == "postgresql+psycopg2://bi_reader:XXXXXXXXXX@db.internal:6543/warehouse"
    assert built.passwords == {bundle.POSTGRES_DATABASE: "s3cret-bi-reader"}
    assert b"s3cret-bi-reader" not in built.zip_bytes()
    # No password (local trust): no mask either, or Superset would ask for one.
    plain = bundle.build(semantic_dir=FIXTURE, paths=env_paths, target="duckdb")
    assert plain.config(bundle.POSTGRES_DATABASE)["sqlalchemy_uri"].startswith("postgresql+psycopg2://bi_reader@")
    assert plain.passwords == {}


def test_the_production_profile_moves_the_datasets_to_the_serving_schema(env_paths):
    duck = bundle.build(semantic_dir=FIXTURE, paths=env_paths, target="duckdb")
    pg = bundle.build(semantic_dir=FIXTURE, paths=env_paths, target="postgres")
    pg_uuid = pg.config(bundle.POSTGRES_DATABASE)["uuid"]
    for name, config in configs(pg, "datasets/").items():
        assert config["database_uuid"] == pg_uuid and config["schema"] == settings.PUBLISHED_SCHEMA
        before = duck.config(name)
        assert before["schema"] == "main" and before["uuid"] == config["uuid"]  # the same dataset, moved
        assert config["metrics"] == before["metrics"] and config["metrics"]


def test_every_chart_gets_the_query_context_explore_would_save(env_paths):
    built = bundle.build(semantic_dir=FIXTURE, paths=env_paths, target="duckdb")
    jobs = built.config("charts/Jobs_retained_against_the_target.yaml")
    context = json.loads(jobs["query_context"])
    (query,) = context["queries"]
    assert query["metrics"] == ["target_actual_value", "target_value"]
    assert query["columns"][0] == {
        "timeGrain": "P1D",
        "columnType": "BASE_AXIS",
        "sqlExpression": "as_of_date",
        "label": "as_of_date",
        "expressionType": "SQL",
    }
    assert query["columns"][1:] == ["program_code"]
    assert {"col": "metric", "op": "==", "val": "jobs_retained"} in query["filters"]
    assert context["form_data"]["viz_type"] == "echarts_timeseries_line"
    with pytest.raises(ValueError, match="no query context"):
        bundle.query_context({"viz_type": "pie"})


def test_a_chart_whose_metric_the_semantic_layer_lacks_is_refused(env_paths, tmp_path):
    layer = (FIXTURE / "kpis.yml").read_text().replace("- name: par90_rate", "- name: par90_rate_renamed")
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "kpis.yml").write_text(layer)
    with pytest.raises(SemanticLayerError, match=r"'PAR30 and PAR90' uses metrics \['par90_rate'\]"):
        bundle.build(semantic_dir=tmp_path / "layer", paths=env_paths, target="duckdb")


@pytest.mark.skipif(not SEMANTIC_DIR.is_dir(), reason=f"the project's semantic layer {SEMANTIC_DIR} is not there yet")
def test_the_projects_semantic_layer_defines_every_metric_the_charts_use(env_paths):
    built = bundle.build(semantic_dir=SEMANTIC_DIR, paths=env_paths, target="duckdb")
    assert all(c["metrics"] for c in configs(built, "datasets/").values())


def test_bi_settings(monkeypatch):
    monkeypatch.delenv("PROGRAM_REPORTING_BI_PORT", raising=False)
    monkeypatch.delenv("PROGRAM_REPORTING_BI_ADMIN_USER", raising=False)
    assert settings.bi_port() == 8088 and settings.bi_admin_user() == "admin"
    monkeypatch.setenv("PROGRAM_REPORTING_BI_PORT", "70000")
    with pytest.raises(ValueError, match="PROGRAM_REPORTING_BI_PORT"):
        settings.bi_port()
    monkeypatch.setenv("PROGRAM_REPORTING_BI_ADMIN_PASSWORD", "   ")
    assert settings.bi_admin_password() is None  # blank is no password


def test_bi_refuses_to_start_without_an_admin_password(monkeypatch, capsys):
    monkeypatch.delenv("PROGRAM_REPORTING_BI_ADMIN_PASSWORD", raising=False)
    assert main(["bi"]) == 2
    assert "PROGRAM_REPORTING_BI_ADMIN_PASSWORD is not set" in capsys.readouterr().err


def test_make_bi_refuses_before_installing_anything_without_an_admin_password():
    env = {k: v for k, v in os.environ.items() if k != "PROGRAM_REPORTING_BI_ADMIN_PASSWORD"}
    proc = subprocess.run(
        ["make", "--no-print-directory", "bi"], cwd=settings.REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "PROGRAM_REPORTING_BI_ADMIN_PASSWORD is not set" in proc.stderr
    assert "uv pip install" not in proc.stdout  # it said so before creating any environment


def test_bi_help_says_what_it_does_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bi", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "PROGRAM_REPORTING_BI_ADMIN_PASSWORD" in out and ".venv-bi/" in out and "examples:" in out


def test_superset_reads_the_published_file_with_the_pipelines_duckdb():
    """The file's storage is duckdb 2.0.1's: .venv-bi/ pins the duckdb that .venv/ writes with."""
    pinned = re.search(r'"duckdb==([^"]+)"', (settings.REPO_ROOT / "pyproject.toml").read_text()).group(1)
    lock = (settings.REPO_ROOT / "bi" / "requirements-bi.lock").read_text()
    assert re.search(rf"^duckdb=={re.escape(pinned)}$", lock, re.M), pinned
    assert re.search(r"^apache-superset==6\.1\.", lock, re.M)
