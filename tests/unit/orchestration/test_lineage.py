"""OpenLineage settings, dataset names and each run's archive (orchestration/lineage.py),
with the real OpenLineage client, Airflow's provider configuration and openlineage-dbt.
A real night's events, followed from the drop to the published set, are in
tests/e2e/test_e2e_nightly.py (the three nights)."""

from __future__ import annotations

import datetime as dt
import json
import stat
import uuid

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Dataset, Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import parent_run

from program_reporting.core.settings import DBT_PROJECT_DIR
from program_reporting.orchestration import lineage, nightly
from program_reporting.orchestration.airflow_env import airflow_env

OL_SETTINGS = (
    *lineage.OPERATOR_SETTINGS,
    lineage.URL_ENV,
    "OPENLINEAGE_URL",
    "AIRFLOW__OPENLINEAGE__NAMESPACE",
    "AIRFLOW__OPENLINEAGE__DISABLED",
    "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD",
)


@pytest.fixture
def ol_env(env_paths, monkeypatch):
    """No OpenLineage setting of the machine's leaks in; returns a function that
    puts airflow_env()'s OpenLineage settings into this process, as an Airflow task sees them."""
    for name in OL_SETTINGS:
        monkeypatch.delenv(name, raising=False)

    def apply() -> dict:
        env = airflow_env()
        for name, value in env.items():
            if name.startswith("AIRFLOW__OPENLINEAGE__"):
                monkeypatch.setenv(name, value)
        return env

    return apply


def transport_of(env: dict) -> dict:
    return json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])


def event(
    root: str,
    job: str,
    when: str,
    airflow_run: str | None = None,
    parent: str | None = None,
    child_of_task: str | None = None,
) -> RunEvent:
    """An event as Airflow's provider makes them (the DAG run's, or a task's: parent the
    DAG run; both name their Airflow run), or as dbt's are (parent a task run, root the
    DAG run, no Airflow run)."""
    from airflow.providers.openlineage.plugins.facets import AirflowDagRunFacet

    facets = {}
    if airflow_run:
        key = "airflow" if parent else "airflowDagRun"
        facets[key] = AirflowDagRunFacet(dag={}, dagRun={"run_id": airflow_run})
    if parent or child_of_task:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=child_of_task or parent),
            job=parent_run.Job(namespace="program_reporting", name=job.rsplit(".", 1)[0]),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=root), job=parent_run.RootJob(namespace="program_reporting", name="dag")
            ),
        )
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=when,
        run=Run(runId=str(uuid.uuid4()) if (parent or child_of_task) else root, facets=facets),
        job=Job(namespace="program_reporting", name=job),
        producer="test",
        inputs=[Dataset(namespace="file", name="/in")],
    )


# --------------------------------------------------------------------------- transport


def test_the_transport_is_a_file_by_default_and_the_provider_emits_to_it(ol_env, env_paths):
    env = ol_env()
    spool = env_paths.tmp / "lineage" / "events.jsonl"
    assert transport_of(env) == {
        "type": "file",
        "log_file_path": str(spool),
        "append": True,
        "name": "program_reporting",
    }
    assert env["AIRFLOW__OPENLINEAGE__NAMESPACE"] == "program_reporting"
    assert env["AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD"] == "True"

    from airflow.providers.openlineage import conf
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    assert not conf.is_disabled() and conf.transport() == transport_of(env)
    assert conf.namespace() == "program_reporting"
    lineage.ensure_spool()
    adapter = OpenLineageAdapter()  # what the listener emits through
    assert adapter.get_or_create_openlineage_client().transport.kind == "file"
    root = str(uuid.uuid4())
    adapter.emit(event(root, "dag", "2020-06-03T00:00:00+00:00"))
    adapter.emit(event(root, "dag.plan", "2020-06-03T00:00:01+00:00", parent=root))
    lines = spool.read_text().splitlines()
    assert [json.loads(line)["job"]["name"] for line in lines] == ["dag", "dag.plan"]


def test_a_lineage_server_is_added_beside_the_file_and_the_client_accepts_it(ol_env, env_paths, monkeypatch):
    monkeypatch.setenv(lineage.URL_ENV, "http://marquez:5000/")
    config = transport_of(ol_env())
    assert config["type"] == "composite" and config["continue_on_failure"] is True
    assert config["transports"]["spool"]["type"] == "file"
    assert config["transports"]["spool"]["log_file_path"] == str(env_paths.tmp / "lineage" / "events.jsonl")
    server = config["transports"]["server"]
    assert (server["type"], server["url"], server["endpoint"]) == ("http", "http://marquez:5000", "api/v1/lineage")
    assert server["retry"]["total"] == 1  # a task never waits through the client's five retries

    # The OpenLineage client builds both transports from it (no server is contacted).
    transport = OpenLineageClient(config={"transport": config}).transport
    assert transport.kind == "composite"
    kinds = {t.kind: t for t in transport.transports}
    assert set(kinds) == {"file", "http"}
    assert kinds["http"].url == "http://marquez:5000" and kinds["http"].timeout == 5

    # OpenLineage's own variable works the same; a URL that is not one is refused, naming the setting
    monkeypatch.delenv(lineage.URL_ENV)
    monkeypatch.setenv("OPENLINEAGE_URL", "https://lineage.example.org")
    assert transport_of(airflow_env())["transports"]["server"]["url"] == "https://lineage.example.org"
    monkeypatch.setenv(lineage.URL_ENV, "marquez:5000")
    with pytest.raises(ValueError, match=lineage.URL_ENV):
        airflow_env()


def test_an_operators_own_openlineage_configuration_is_kept(ol_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", '{"type": "console"}')
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "prod")
    env = ol_env()
    assert transport_of(env) == {"type": "console"} and env["AIRFLOW__OPENLINEAGE__NAMESPACE"] == "prod"
    monkeypatch.delenv("AIRFLOW__OPENLINEAGE__TRANSPORT")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "true")
    ol_env()
    assert not lineage.active()


# --------------------------------------------------------------------------- datasets


def test_dataset_names_join_landing_dbt_and_publishing(env_paths, monkeypatch):
    p = env_paths
    record = {"source": "merchants", "ds": "2020-06-03", "file": "merchants/ds=2020-06-03/m.csv", "delivered": 5}
    drop = lineage.drop_dataset(record, p)
    assert (drop.namespace, drop.name) == ("file", str(p.drop / "merchants"))
    partition = drop.inputFacets["subset"].inputCondition.partitions[0]
    assert partition.dimensions == {"ds": "2020-06-03"} and partition.identifier == record["file"]
    written = lineage.raw_dataset("merchants", ["2020-06-03"], p, output=True, rows=4)
    assert (written.namespace, written.name) == ("file", str(p.raw / "merchants"))
    assert written.outputFacets["outputStatistics"].rowCount == 4

    # openlineage-dbt names the warehouse from our profiles.yml as the datasets here do
    from openlineage.common.provider.dbt.local import DbtLocalArtifactProcessor

    monkeypatch.setenv("PROGRAM_REPORTING_HOME", str(p.home))
    processor = DbtLocalArtifactProcessor(producer="test", job_namespace="ns", project_dir=str(DBT_PROJECT_DIR))
    profile = processor.load_yaml_with_jinja(str(DBT_PROJECT_DIR / "profiles.yml"))["program_reporting"]
    duckdb_profile = profile["outputs"]["duckdb"]
    processor.extract_adapter_type(duckdb_profile)
    assert processor.extract_namespace(duckdb_profile) == lineage.warehouse_namespace(p)
    mart = lineage.warehouse_dataset("kpi_program_daily", p)
    assert mart.name == "warehouse.main.kpi_program_daily"  # <database>.<schema>.<alias>, as in dbt's events

    # dbt's source raw.merchants is the folder landing wrote; dbt's name stays as a symlink
    dbt_event = RunEvent(
        eventType=RunState.START,
        eventTime="2020-06-04T00:00:00+00:00",
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="ns", name="stg_merchants"),
        producer="test",
        inputs=[
            Dataset(namespace=lineage.warehouse_namespace(p), name="warehouse.raw.merchants"),
            Dataset(namespace=lineage.warehouse_namespace(p), name="warehouse.main.int_build_plan"),
        ],
    )
    lineage.name_raw_sources(dbt_event, p)
    assert [(d.namespace, d.name) for d in dbt_event.inputs] == [
        (written.namespace, written.name),
        (lineage.warehouse_namespace(p), "warehouse.main.int_build_plan"),
    ]
    symlink = dbt_event.inputs[0].facets["symlinks"].identifiers[0]
    assert (symlink.namespace, symlink.name) == (lineage.warehouse_namespace(p), "warehouse.raw.merchants")

    # the candidate set stage_audit writes is what validate and publish read; publish's
    # current.duckdb is the dataset Airflow's provider makes of its kpi_* Asset outlets
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset

    staged = lineage.audit_dataset("r1", p, output=True)
    read = lineage.audit_dataset("r1", p)
    assert (staged.namespace, staged.name) == (read.namespace, read.name) == ("file", str(p.audit))
    runs, current = lineage.published_datasets("r1", p)
    assert runs.name == str(p.runs) and runs.outputFacets["subset"].outputCondition.partitions[0].identifier == (
        "r1/kpi.duckdb"
    )
    for asset in nightly.mart_assets():
        translated = translate_airflow_asset(asset, None)
        assert (translated.namespace, translated.name) == (current.namespace, current.name)


# --------------------------------------------------------------------------- the archive


def test_the_archive_holds_the_runs_events_once_beside_its_report(ol_env, env_paths):
    p = env_paths
    config = transport_of(ol_env())
    lineage.ensure_spool()
    client = OpenLineageClient(config={"transport": config})
    run, other = str(uuid.uuid4()), str(uuid.uuid4())
    task_run = str(uuid.uuid4())
    # an earlier run of the same date: the same OpenLineage run ids, another Airflow run, earlier
    client.emit(event(run, "dag.plan", "2020-06-02T23:00:00+00:00", "manual__1", parent=run))
    client.emit(event(run, "model.stg_merchants", "2020-06-02T23:00:03+00:00", child_of_task=task_run))
    client.emit(event(run, "dag", "2020-06-02T23:00:09+00:00", "manual__1"))
    # this run, and another DAG's run at the same time
    client.emit(event(other, "dag", "2020-06-03T00:00:00+00:00", "manual__2"))
    client.emit(event(run, "dag.publish", "2020-06-03T00:00:05+00:00", "manual__2", parent=run))
    client.emit(event(run, "dag.plan", "2020-06-03T00:00:01+00:00", "manual__2", parent=run))
    client.emit(event(run, "model.stg_merchants", "2020-06-03T00:00:03+00:00", child_of_task=task_run))
    client.emit(event(other, "dag.plan", "2020-06-03T00:00:02+00:00", "manual__2", parent=other))
    with open(lineage.spool_dir(p) / lineage.SPOOL_FILE, "a") as fh:
        fh.write('{"eventType": "START", "run": {"runId": "')  # an event being written as the archive reads

    # no report yet: nothing is written (a folder would stop the report being written)
    assert lineage.write_archive("2020-06-03_r", lineage.run_events(run, "manual__2", p), p) is None
    assert not (p.reports / "2020-06-03_r").exists()

    (p.reports / "2020-06-03_r").mkdir(parents=True)
    (p.reports / "2020-06-03_r" / "report.json").write_text("{}")
    path = lineage.write_archive("2020-06-03_r", lineage.run_events(run, "manual__2", p), p)
    assert path == p.reports / "2020-06-03_r" / "lineage" / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["job"]["name"], e["eventTime"][11:19]) for e in events] == [  # in time order
        ("dag.plan", "00:00:01"),
        ("model.stg_merchants", "00:00:03"),
        ("dag.publish", "00:00:05"),
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert sorted(f.name for f in (p.reports / "2020-06-03_r").iterdir()) == ["lineage", "report.json"]

    # written once: a retried report task keeps it
    before = path.read_bytes()
    client.emit(event(run, "dag.report", "2020-06-03T00:00:06+00:00", "manual__2", parent=run))
    assert lineage.write_archive("2020-06-03_r", lineage.run_events(run, "manual__2", p), p) == path
    assert path.read_bytes() == before

    # each archive starts the spool afresh: the next event goes to a new file, the
    # older ones stay for retention (tmp/), and a reader skips those last written too long ago
    client.emit(event(run, "dag.end", "2020-06-03T00:00:07+00:00", "manual__2", parent=run))
    spool = lineage.spool_dir(p)
    assert [json.loads(line)["job"]["name"] for line in (spool / "events.jsonl").read_text().splitlines()] == [
        "dag.end"
    ]
    assert len(list(spool.glob("events-*.jsonl"))) == 2
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert lineage.run_events(run, "manual__2", p, not_before=later) == []


def test_belongs_follows_parent_and_root_run_ids():
    root = "r"
    assert lineage.belongs({"run": {"runId": "r"}}, root)
    assert lineage.belongs({"run": {"runId": "t", "facets": {"parent": {"run": {"runId": "r"}}}}}, root)
    child = {"run": {"runId": "m", "facets": {"parent": {"run": {"runId": "t"}, "root": {"run": {"runId": "r"}}}}}}
    assert lineage.belongs(child, root)
    assert not lineage.belongs({"run": {"runId": "x", "facets": {"parent": {"run": {"runId": "y"}}}}}, root)
    assert not lineage.belongs({}, root)


def test_the_pipeline_run_id_says_when_the_plan_ran():
    assert lineage.planned_at("2020-06-03_20261207T161740Z") == dt.datetime(2026, 12, 7, 16, 17, 40, tzinfo=dt.UTC)
    assert lineage.planned_at("not-a-run-id") is None


def test_a_run_started_when_its_dag_run_did_or_just_before_its_plan():
    planned = dt.datetime(2026, 12, 7, 16, 17, 40, tzinfo=dt.UTC)
    scheduled = planned - dt.timedelta(seconds=3)
    assert lineage.run_started(scheduled, planned) == scheduled  # under a scheduler
    logical = dt.datetime(2020, 6, 3, 18, tzinfo=dt.UTC)  # `airflow dags test` of a past date
    assert lineage.run_started(logical, planned) == planned - dt.timedelta(minutes=2)
    assert lineage.run_started(None, planned) == planned - dt.timedelta(minutes=2)
    assert lineage.run_started(scheduled, None) is None
