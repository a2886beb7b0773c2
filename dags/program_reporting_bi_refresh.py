"""Airflow DAG `program_reporting_bi_refresh`: runs when the nightly DAG publishes.

Scheduled on the three published `kpi_*` Assets (the nightly `publish` task
emits all three together). Exports the published set as Parquet, one folder
per table, and writes the one-page KPI brief. Logic: program_reporting.publishing.exports
and program_reporting.reporting.brief.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import dag, task

from program_reporting.orchestration.nightly import mart_assets

DOC_MD = """
### BI refresh

Triggered by Airflow's asset scheduling when `program_reporting_nightly`
publishes a new KPI set (Assets `kpi_program_daily`, `kpi_segment_daily`,
`kpi_target_progress`). Several publishes before a refresh runs are coalesced
into one refresh of the latest set.

- `export_parquet`: `home/exports/parquet/<table>/<table>.parquet`, each folder
  swapped atomically.
- `write_brief`: `home/exports/kpi_brief.html`, a self-contained one-page brief.

Reads `published/current.duckdb` read-only: never contends for the pipeline's write lock.
"""


@dag(
    dag_id="program_reporting_bi_refresh",
    description="Parquet exports and the KPI brief of the published set",
    schedule=mart_assets(),
    start_date=pendulum.datetime(2020, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    # Unlike the nightly DAG it is live from the start: it only reacts to publishes.
    is_paused_upon_creation=False,
    default_args={
        "owner": "program-reporting",
        "retries": 1,  # file I/O only; the inputs are immutable published sets
        "retry_delay": dt.timedelta(seconds=30),
    },
    tags=["program-reporting", "bi", "exports"],
    doc_md=DOC_MD,
)
def program_reporting_bi_refresh():
    @task(execution_timeout=dt.timedelta(minutes=30))
    def export_parquet(**context) -> dict:
        from program_reporting.publishing import exports

        events = context.get("triggering_asset_events") or {}
        for asset, asset_events in events.items():
            for event in asset_events:
                print(f"triggered by {asset}: {getattr(event, 'extra', None)}")
        return exports.export_parquet()

    @task(execution_timeout=dt.timedelta(minutes=10))
    def write_brief() -> str:
        from program_reporting.reporting import brief

        return str(brief.write_brief())

    export_parquet() >> write_brief()


program_reporting_bi_refresh()
