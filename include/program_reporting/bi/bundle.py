"""The "Program KPIs" dashboard bundle: kept in the repository as Superset's YAML export
(bi/bundle/: metadata.yaml, databases/, datasets/, charts/, dashboards/), completed and
zipped here at import time.

What the repository's YAML leaves to this module, so that nothing there goes stale:

- the databases' SQLAlchemy URIs, from the settings: the published DuckDB file
  (<home>/published/current.duckdb, opened read-only) and the PostgreSQL serving schema
  as `bi_reader` (PROGRAM_REPORTING_PG_HOST/PORT/DATABASE); bi_reader's password, when
  there is one (PROGRAM_REPORTING_BI_READER_PASSWORD), goes to the import beside the zip,
  never into it;
- the PostgreSQL datasets' schema (settings.PUBLISHED_SCHEMA);
- every dataset's metrics, generated from the dbt semantic layer (bi.metrics);
- every chart's query_context, built from its params as Superset's Explore saves it,
  which the chart-data API (/api/v1/chart/<id>/data/) runs;
- which database the three datasets (and so the charts) read: the DuckDB file (default),
  or the serving schema when PROGRAM_REPORTING_TARGET=postgres (the production profile).
  Both databases are registered either way; SQL Lab and new datasets can use either."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import yaml

from program_reporting.bi.metrics import dataset_metrics
from program_reporting.core import settings
from program_reporting.warehouse.semantic import SEMANTIC_DIR, SemanticLayerError

BUNDLE_DIR = settings.REPO_ROOT / "bi" / "bundle"
ROOT = "program_kpis"  # the folder inside the zip, as an export names it
DUCKDB_DATABASE = "databases/published_set_duckdb.yaml"
POSTGRES_DATABASE = "databases/serving_schema_postgresql.yaml"
DASHBOARD_TITLE = "Program KPIs"
DASHBOARD_SLUG = "program-kpis"


@dataclass(frozen=True)
class Bundle:
    """What an import needs: the zip's files (path inside the zip -> YAML text) and the
    database passwords kept apart from them (path of the database's file -> password)."""

    files: dict[str, str]
    passwords: dict[str, str]

    def zip_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name, text in sorted(self.files.items()):
                bundle.writestr(f"{ROOT}/{name}", text)
        return buffer.getvalue()

    def config(self, name: str) -> dict:
        return yaml.safe_load(self.files[name])


def duckdb_uri(paths: settings.Paths) -> str:
    return f"duckdb:///{paths.current_db.resolve()}"


def postgres_uri(pg: settings.PostgresSettings, masked_password: bool) -> str:
    user = settings.BI_READER_ROLE + (":XXXXXXXXXX" if masked_password else "")
    return f"postgresql+psycopg2://{user}@{pg.host}:{pg.port}/{quote(pg.database, safe='')}"


def build(
    bundle_dir: Path = BUNDLE_DIR,
    semantic_dir: Path = SEMANTIC_DIR,
    paths: settings.Paths | None = None,
    pg: settings.PostgresSettings | None = None,
    target: str | None = None,
    bi_reader_password: str | None = None,
) -> Bundle:
    """The bundle as Superset imports it, from the repository's YAML and the settings."""
    paths = paths or settings.paths()
    pg = pg or settings.postgres()
    target = target or settings.warehouse_target()
    configs = {
        str(path.relative_to(bundle_dir)): yaml.safe_load(path.read_text())
        for path in sorted(bundle_dir.rglob("*.yaml"))
    }
    databases = {name: c for name, c in configs.items() if name.startswith("databases/")}
    datasets = {name: c for name, c in configs.items() if name.startswith("datasets/")}
    charts = {name: c for name, c in configs.items() if name.startswith("charts/")}

    databases[DUCKDB_DATABASE]["sqlalchemy_uri"] = duckdb_uri(paths)
    databases[POSTGRES_DATABASE]["sqlalchemy_uri"] = postgres_uri(pg, masked_password=bool(bi_reader_password))
    passwords = {POSTGRES_DATABASE: bi_reader_password} if bi_reader_password else {}

    # One dataset per published table (Superset's SQLite metadata allows no two datasets of
    # one table name): on the DuckDB file, or on the serving schema in the production profile.
    if target == "postgres":
        for config in datasets.values():
            config["database_uuid"] = databases[POSTGRES_DATABASE]["uuid"]
            config["schema"] = settings.PUBLISHED_SCHEMA
    columns = {c["table_name"]: {col["column_name"] for col in c["columns"]} for c in datasets.values()}
    metrics = dataset_metrics(semantic_dir, columns)
    tables = {}
    for config in datasets.values():
        config["metrics"] = copy.deepcopy(metrics.get(config["table_name"], []))
        tables[config["uuid"]] = config["table_name"]

    for config in charts.values():
        table = tables[config["dataset_uuid"]]
        missing = set(config["params"]["metrics"]) - {m["metric_name"] for m in metrics.get(table, [])}
        if missing:
            raise SemanticLayerError(
                f"chart {config['slice_name']!r} uses metrics {sorted(missing)} that the semantic layer "
                f"in {semantic_dir} does not define on {table}"
            )
        config["query_context"] = json.dumps(query_context(config["params"]))

    files = {name: yaml.safe_dump(config, sort_keys=False, allow_unicode=True) for name, config in configs.items()}
    return Bundle(files, passwords)


def query_context(params: dict) -> dict:
    """The query a time-series chart runs, as Superset's Explore saves it with the chart
    (the frontend's buildQuery for echarts_timeseries_*): the x axis at its time grain,
    grouped by the chart's dimensions, with its WHERE filters. The datasource id is the
    import's to set. Rows come back in long form, one per date and group, without the
    frontend's pivot: what an API reader wants."""
    if not str(params.get("viz_type", "")).startswith("echarts_timeseries"):
        raise ValueError(f"no query context for viz_type {params.get('viz_type')!r}")
    grain = params.get("time_grain_sqla")
    x_axis = params["x_axis"]
    groupby = list(params.get("groupby") or [])
    filters = [
        {"col": f["subject"], "op": f["operator"], "val": f["comparator"]}
        for f in params.get("adhoc_filters") or []
        if f.get("expressionType") == "SIMPLE" and f.get("clause") == "WHERE"
    ]
    query = {
        "filters": filters,
        "extras": {"having": "", "where": "", "time_grain_sqla": grain},
        "applied_time_extras": {},
        "columns": [
            {
                "timeGrain": grain,
                "columnType": "BASE_AXIS",
                "sqlExpression": x_axis,
                "label": x_axis,
                "expressionType": "SQL",
            },
            *groupby,
        ],
        "metrics": list(params["metrics"]),
        "orderby": [[params["metrics"][0], False]],
        "annotation_layers": [],
        "row_limit": params.get("row_limit", 10000),
        "series_columns": groupby,
        "series_limit": 0,
        "order_desc": True,
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
        "time_offsets": [],
        "post_processing": [],
    }
    return {
        "datasource": {"id": 0, "type": "table"},
        "force": False,
        "queries": [query],
        "form_data": {**params, "force": False, "result_format": "json", "result_type": "full"},
        "result_format": "json",
        "result_type": "full",
    }
