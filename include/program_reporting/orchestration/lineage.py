"""OpenLineage events of the nightly run: where they go, which datasets each
step read and wrote, and the copy every run keeps with its report.

Airflow's OpenLineage provider emits an event when each task of the run starts
and ends, and when the DAG run ends (and starts, under a scheduler; `airflow
dags test` emits no start). Our steps add what they read and
wrote (the provider's `emit_dataset_lineage`: a RUNNING event of the task's
own run), and after `dbt_build` openlineage-dbt turns dbt's manifest and
run_results into one job per model and one per model's tests, each a child
(parent run facet) of the `dbt_build` task's run.

Transport (`airflow_settings`, part of `airflow_env()`): a file, by default
and always: `<home>/tmp/lineage/events.jsonl`, one event per line, appended
by every process (task processes, the scheduler; each event is one write).
`PROGRAM_REPORTING_OPENLINEAGE_URL` (or OpenLineage's own `OPENLINEAGE_URL`)
adds an HTTP transport to that server, e.g. Marquez; the file keeps
receiving every event. An operator's own `AIRFLOW__OPENLINEAGE__TRANSPORT`,
`..CONFIG_PATH` or `..CONFIG_CONN_ID` is left alone (then the archive holds
what reaches the file, if anything), and `AIRFLOW__OPENLINEAGE__DISABLED=true`
turns lineage off.

Datasets (`docs/orchestration.md#lineage`), named so that one step's outputs
are the next step's inputs, night after night:

  drop        file  <drop>/<source>                 read by land_<source>, partition ds=<ds> (the delivery file)
  raw         file  <home>/raw/<source>             written by land_<source> (partition ds=<ds>), read by
                                                    gate_landed and by dbt's staging models (dbt's source
                                                    raw.<source>, kept as a symlink facet)
  warehouse   duckdb://<home>/warehouse/warehouse.duckdb  warehouse.main.<model>: dbt's own names
  audit       file  <home>/audit                    the candidate set, partition run_id=<run_id>
  published   file  <home>/published/runs           partition run_id=<run_id>; and
              file  <home>/published/current.duckdb  (the dataset the kpi_* Assets of publish become)

Archive (`archive`, by the `report` task): `reports/<run_id>/lineage/events.jsonl`,
the run's events up to the report task's start, one per line in time order:
every task's START and COMPLETE (or FAIL) through `publish`, the steps'
dataset events, dbt's model and test events. Written once, read-only, beside
the report (its SHA256SUMS and index line come first and do not cover this
folder).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from program_reporting.core.settings import DBT_PROJECT_DIR, SOURCES, Paths
from program_reporting.core.settings import paths as default_paths

log = logging.getLogger(__name__)

URL_ENV = "PROGRAM_REPORTING_OPENLINEAGE_URL"
NAMESPACE = "program_reporting"  # the jobs' namespace, unless AIRFLOW__OPENLINEAGE__NAMESPACE says otherwise
SPOOL_FILE = "events.jsonl"
TRANSPORT_NAME = "program_reporting"  # names the transport we set (see _ours)
ARCHIVE_FOLDER = "lineage"
ARCHIVE_FILE = "events.jsonl"
FILE = "file"  # OpenLineage's namespace for the local file system
KPI_MARTS = ("kpi_program_daily", "kpi_segment_daily", "kpi_target_progress")
# The operator configured OpenLineage: we do not set a transport over theirs.
OPERATOR_SETTINGS = (
    "AIRFLOW__OPENLINEAGE__TRANSPORT",
    "AIRFLOW__OPENLINEAGE__CONFIG_PATH",
    "AIRFLOW__OPENLINEAGE__CONFIG_CONN_ID",
    "OPENLINEAGE_CONFIG",
)
# dbt's events go out one by one through the transport: an HTTP server that
# does not answer must not hold the warehouse for long.
DBT_EMIT_SECONDS = 60.0
READ_ONLY = 0o444


# --------------------------------------------------------------------------- where events go


def spool_dir(p: Paths | None = None) -> Path:
    """The file transport's folder: tmp/lineage/ (retention empties it of files
    older than PROGRAM_REPORTING_RETAIN_TMP_HOURS; the reports keep each run's copy)."""
    return (p or default_paths()).tmp / "lineage"


def ensure_spool(p: Paths | None = None) -> Path:
    """The file transport does not create its folder: every writer needs it there."""
    folder = spool_dir(p)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def transport_config(environ: dict[str, str], p: Paths | None = None) -> dict:
    """The OpenLineage transport: the spool file, plus HTTP to a server when a URL is set."""
    spool = {"type": "file", "log_file_path": str(spool_dir(p) / SPOOL_FILE), "append": True}
    name = URL_ENV if environ.get(URL_ENV, "").strip() else "OPENLINEAGE_URL"
    url = environ.get(name, "").strip()
    if not url:
        return {**spool, "name": TRANSPORT_NAME}
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{name}={url!r}: expected the lineage server's base URL, e.g. http://localhost:5000")
    http = {
        "type": "http",
        "url": url.rstrip("/"),
        "endpoint": "api/v1/lineage",  # Marquez's; any OpenLineage HTTP server takes this path
        "timeout": 5,
        # one retry, not the client's five with back-off: a task waits for its events
        "retry": {"total": 1, "connect": 1, "read": 1, "backoff_factor": 0.3},
    }
    return {
        "type": "composite",
        "name": TRANSPORT_NAME,
        "continue_on_failure": True,  # a server that is down never costs the file its events
        "continue_on_success": True,
        "transports": {"spool": spool, "server": http},
    }


def airflow_settings(environ: dict[str, str], p: Paths | None = None) -> dict[str, str]:
    """Airflow's [openlineage] settings for an Airflow process (airflow_env)."""
    out = {
        "AIRFLOW__OPENLINEAGE__NAMESPACE": environ.get("AIRFLOW__OPENLINEAGE__NAMESPACE") or NAMESPACE,
        # The provider forks the task process to emit each task event, by default. Under
        # `program-reporting run` every task runs in one process, with DuckDB's and dbt's
        # threads: a thread is safer than a fork there, and cheaper.
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": environ.get("AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD") or "True",
    }
    if not any(environ.get(name) and not _ours(name, environ[name]) for name in OPERATOR_SETTINGS):
        out["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(transport_config(environ, p))
    return out


def _ours(name: str, value: str) -> bool:
    """A transport this module set (an Airflow process's environment passed on to
    another): made again from the current settings, not kept as the operator's."""
    if name != "AIRFLOW__OPENLINEAGE__TRANSPORT":
        return False
    try:
        return json.loads(value).get("name") == TRANSPORT_NAME
    except (ValueError, AttributeError):
        return False


def active() -> bool:
    """Whether the provider will emit: installed, configured and not disabled."""
    try:
        from airflow.providers.openlineage import conf
    except ImportError:
        return False
    return not conf.is_disabled()


# --------------------------------------------------------------------------- datasets


def warehouse_namespace(p: Paths) -> str:
    """dbt's namespace for the DuckDB warehouse (openlineage-dbt: duckdb://<profile path>)."""
    return f"duckdb://{p.warehouse_db}"


def warehouse_name(table: str, p: Paths, schema: str = "main") -> str:
    """dbt's name of a relation: <database>.<schema>.<table>; DuckDB's database is the file's stem."""
    return f"{p.warehouse_db.stem}.{schema}.{table}"


def _partitions(dimension: str, values: Iterable[str], identifier=lambda v: None):
    from openlineage.client.facet_v2 import base_subset_dataset as subset

    return subset.PartitionSubsetCondition(
        partitions=[subset.Partition(dimensions={dimension: v}, identifier=identifier(v)) for v in values]
    )


def _input(namespace: str, name: str, facets: dict | None = None, **input_facets):
    from openlineage.client.event_v2 import InputDataset

    return InputDataset(namespace=namespace, name=name, facets=facets or {}, inputFacets=input_facets)


def _output(namespace: str, name: str, facets: dict | None = None, **output_facets):
    from openlineage.client.event_v2 import OutputDataset

    return OutputDataset(namespace=namespace, name=name, facets=facets or {}, outputFacets=output_facets)


def drop_dataset(record: dict, p: Paths):
    """A source's deliveries, as landing read one: the partition ds=<ds>, its file named."""
    from openlineage.client.facet_v2 import base_subset_dataset as subset
    from openlineage.client.facet_v2 import input_statistics_input_dataset as stats

    ds, file = record["ds"], record.get("file")
    return _input(
        FILE,
        str(p.drop / record["source"]),
        subset=subset.InputSubsetInputDatasetFacet(inputCondition=_partitions("ds", [ds], lambda _: file)),
        inputStatistics=stats.InputStatisticsInputDatasetFacet(rowCount=record.get("delivered")),
    )


def _raw_facets(source: str, p: Paths) -> dict:
    """The raw layer's files are dbt's source raw.<source> (an external source over them)."""
    from openlineage.client.facet_v2 import symlinks_dataset as symlinks

    return {
        "symlinks": symlinks.SymlinksDatasetFacet(
            identifiers=[
                symlinks.Identifier(
                    namespace=warehouse_namespace(p), name=warehouse_name(source, p, schema="raw"), type="TABLE"
                )
            ]
        )
    }


def raw_dataset(source: str, dates: Iterable[str], p: Paths, output: bool = False, rows: int | None = None):
    """raw/<source>, the partitions ds=<date> of `dates`; as written (output) or read."""
    from openlineage.client.facet_v2 import base_subset_dataset as subset
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

    name = str(p.raw / source)
    condition = _partitions("ds", sorted(dates), lambda d: f"ds={d}")
    if not output:
        return _input(
            FILE, name, _raw_facets(source, p), subset=subset.InputSubsetInputDatasetFacet(inputCondition=condition)
        )
    facets = {"subset": subset.OutputSubsetOutputDatasetFacet(outputCondition=condition)}
    if rows is not None:
        facets["outputStatistics"] = stats.OutputStatisticsOutputDatasetFacet(rowCount=rows)
    return _output(FILE, name, _raw_facets(source, p), **facets)


def warehouse_dataset(table: str, p: Paths):
    return _input(warehouse_namespace(p), warehouse_name(table, p))


def _run_set(folder: Path, run_id: str, output: bool):
    """A folder of sets, one per run id (audit/, published/runs/): the run's is <run_id>/kpi.duckdb."""
    from openlineage.client.facet_v2 import base_subset_dataset as subset

    condition = _partitions("run_id", [run_id], lambda r: f"{r}/kpi.duckdb")
    if output:
        return _output(FILE, str(folder), subset=subset.OutputSubsetOutputDatasetFacet(outputCondition=condition))
    return _input(FILE, str(folder), subset=subset.InputSubsetInputDatasetFacet(inputCondition=condition))


def audit_dataset(run_id: str, p: Paths, output: bool = False):
    return _run_set(p.audit, run_id, output)


def published_datasets(run_id: str, p: Paths) -> list:
    """published/runs/<run_id>/kpi.duckdb, and current.duckdb, now that run's set."""
    from openlineage.client.facet_v2 import dataset_version_dataset as version

    current = _output(FILE, str(p.current_db), {"version": version.DatasetVersionDatasetFacet(datasetVersion=run_id)})
    return [_run_set(p.runs, run_id, output=True), current]


# --------------------------------------------------------------------------- what the steps report


def _emit(context: Any, inputs: list, outputs: list) -> None:
    """A RUNNING event of the task's run with its datasets. Never fails the step."""
    if not active():
        return
    try:
        from airflow.providers.openlineage.api import emit_dataset_lineage

        emit_dataset_lineage(inputs=inputs, outputs=outputs, task_instance=context["ti"])
    except Exception:  # noqa: BLE001 - lineage is a record of the step, not part of it
        log.warning("OpenLineage: the datasets of this step were not emitted", exc_info=True)


def landed(context: Any, record: dict, p: Paths | None = None) -> None:
    """land_<source>: the delivery read, the raw partition written."""
    p = p or default_paths()
    source, ds = record["source"], record["ds"]
    _emit(context, [drop_dataset(record, p)], [raw_dataset(source, [ds], p, output=True, rows=record.get("loaded"))])


def released(context: Any, summary: dict, p: Paths | None = None) -> None:
    """release_orphans: the raw partitions that received released rows."""
    p = p or default_paths()
    outputs = []
    for source in SOURCES:
        dates = [d for d, r in (summary.get(source) or {}).items() if isinstance(r, dict) and r.get("released")]
        if dates:
            outputs.append(raw_dataset(source, dates, p, output=True))
    if outputs:
        _emit(context, [], outputs)


def gated_landed(context: Any, ds: str, p: Paths | None = None) -> None:
    p = p or default_paths()
    _emit(context, [raw_dataset(source, [ds], p) for source in SOURCES], [])


def staged(context: Any, run_id: str, p: Paths | None = None) -> None:
    """stage_audit: the kpi_ marts copied into the candidate set."""
    p = p or default_paths()
    _emit(context, [warehouse_dataset(t, p) for t in KPI_MARTS], [audit_dataset(run_id, p, output=True)])


def validated(context: Any, run_id: str, p: Paths | None = None) -> None:
    p = p or default_paths()
    _emit(context, [audit_dataset(run_id, p)], [])


def published(context: Any, run_id: str, p: Paths | None = None) -> None:
    p = p or default_paths()
    _emit(context, [audit_dataset(run_id, p)], published_datasets(run_id, p))


# --------------------------------------------------------------------------- dbt's models


@contextlib.contextmanager
def _home_for_dbt(p: Paths) -> Iterator[None]:
    """profiles.yml names the warehouse through PROGRAM_REPORTING_HOME, as the build set it."""
    saved = os.environ.get("PROGRAM_REPORTING_HOME")
    os.environ["PROGRAM_REPORTING_HOME"] = str(p.home)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PROGRAM_REPORTING_HOME", None)
        else:
            os.environ["PROGRAM_REPORTING_HOME"] = saved


def dbt_events(p: Paths, job_namespace: str = NAMESPACE, parent=None) -> list:
    """The OpenLineage events of the last build (its dbt_target's manifest and
    run_results): START and COMPLETE (or FAIL) of each model run, and one job
    per model's tests, with the tests as data quality assertions. The raw
    sources are named as the raw layer's files (raw_dataset), which is what dbt
    reads and what landing wrote; dbt's name for them stays as a symlink facet."""
    from openlineage.common.provider.dbt.local import DbtLocalArtifactProcessor

    from program_reporting.warehouse.build import dbt_target

    quiet = logging.getLogger(f"{__name__}.dbt")
    # Its warnings (a singular test with no model) print the whole manifest node.
    quiet.setLevel(logging.ERROR)
    with _home_for_dbt(p):
        processor = DbtLocalArtifactProcessor(
            producer=_producer(),
            job_namespace=job_namespace,
            project_dir=str(DBT_PROJECT_DIR),
            target_path=str(dbt_target(p)),
            skip_errors=True,
            logger=quiet,
        )
        if parent is not None:
            processor.dbt_run_metadata = parent
        events = processor.parse().events()
    for event in events:
        name_raw_sources(event, p)
    return events


def _producer() -> str:
    from importlib.metadata import version

    return f"https://github.com/OpenLineage/OpenLineage/tree/{version('openlineage-dbt')}/integration/dbt"


def name_raw_sources(event: Any, p: Paths) -> None:
    """dbt's inputs raw.<source> (warehouse.raw.<source> in the warehouse's
    namespace) become the raw layer's dataset, as landing names it."""
    import attr

    namespace = warehouse_namespace(p)
    raw = {warehouse_name(s, p, schema="raw"): s for s in SOURCES}
    for i, dataset in enumerate(event.inputs or []):
        if dataset.namespace == namespace and dataset.name in raw:
            source = raw[dataset.name]
            facets = {k: v for k, v in (dataset.facets or {}).items() if k != "dataSource"}
            facets.update(_raw_facets(source, p))
            event.inputs[i] = attr.evolve(dataset, namespace=FILE, name=str(p.raw / source), facets=facets)


def _parent(ti: Any):
    """The dbt_build task's run, as openlineage-dbt's parent (and the DAG run as the root)."""
    from airflow.providers.openlineage.plugins import macros
    from openlineage.common.provider.dbt.facets import ParentRunMetadata

    return ParentRunMetadata(
        run_id=macros.lineage_run_id(ti),
        job_name=macros.lineage_job_name(ti),
        job_namespace=macros.lineage_job_namespace(),
        root_parent_run_id=macros.lineage_root_run_id(ti),
        root_parent_job_name=macros.lineage_root_job_name(ti),
        root_parent_job_namespace=macros.lineage_root_job_namespace(ti),
    )


def dbt_built(context: Any, since: float | None = None, p: Paths | None = None) -> int:
    """After dbt_build (passed or failed): dbt's events, through the provider's
    transport, if dbt wrote its run_results.json after `since` (a build that
    stopped before dbt ran leaves the previous build's). Returns how many went
    out. Never fails the step."""
    if not active():
        return 0
    p = p or default_paths()
    started = time.monotonic()
    sent = 0
    try:
        from program_reporting.warehouse.build import dbt_target

        results = dbt_target(p) / "run_results.json"
        if since is not None and (not results.exists() or results.stat().st_mtime < since):
            log.info("OpenLineage: dbt did not run (no new %s): no events of its models", results)
            return 0
        from airflow.providers.openlineage.api import emit
        from airflow.providers.openlineage.plugins.macros import lineage_job_namespace

        events = dbt_events(p, lineage_job_namespace(), _parent(context["ti"]))
        for event in events:
            if time.monotonic() - started > DBT_EMIT_SECONDS:
                log.warning(
                    "OpenLineage: %d of dbt's %d events not emitted: the transport took over %g s",
                    len(events) - sent,
                    len(events),
                    DBT_EMIT_SECONDS,
                )
                break
            emit(event)
            sent += 1
    except Exception:  # noqa: BLE001 - lineage is a record of the build, not part of it
        log.warning("OpenLineage: dbt's events were not emitted", exc_info=True)
    log.info("OpenLineage: %d events of dbt's models and tests in %.2f s", sent, time.monotonic() - started)
    return sent


# --------------------------------------------------------------------------- the run's archive


def root_run_id(ti: Any) -> str:
    """The DAG run's OpenLineage run id: every task event names it as parent, dbt's as root."""
    from airflow.providers.openlineage.plugins.macros import lineage_root_run_id

    return lineage_root_run_id(ti)


def belongs(event: dict, root: str) -> bool:
    """An event of the DAG run `root`: the run's own, a task's, or a child's of a task (dbt)."""
    run = event.get("run") or {}
    parent = (run.get("facets") or {}).get("parent") or {}
    return root in (
        run.get("runId"),
        (parent.get("run") or {}).get("runId"),
        ((parent.get("root") or {}).get("run") or {}).get("runId"),
    )


def _rotate(spool: Path) -> None:
    """Start a new spool file, so that a night reads only the files written since
    it began (writers open the file per event: the next one creates it afresh)."""
    now = dt.datetime.now(dt.UTC)
    with contextlib.suppress(FileNotFoundError):
        os.rename(spool / SPOOL_FILE, spool / f"events-{now:%Y%m%dT%H%M%S%f}-{os.getpid()}.jsonl")


def run_events(root: str, airflow_run_id: str, p: Paths, not_before: dt.datetime | None = None) -> list[dict]:
    """The spooled events of the Airflow run `airflow_run_id` (OpenLineage run `root`), in time order.

    A re-run of a business date has the same OpenLineage run ids as the run
    before it (the provider derives them from the DAG, the logical date and the
    clear number, and `program-reporting run` gives a date the same logical
    date each time). Airflow's events name their Airflow run; dbt's, children of
    the dbt_build task, do not, and are taken from the run's first event on (a
    calendar's runs never overlap). Spool files last written before
    `not_before` are not read."""
    spool = spool_dir(p)
    if not spool.is_dir():
        return []
    _rotate(spool)
    candidates: list[tuple[dt.datetime, str | None, dict]] = []
    for path in sorted(spool.glob("events*.jsonl")):
        try:
            if not_before is not None and path.stat().st_mtime < not_before.timestamp():
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:  # removed by retention meanwhile
            continue
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:  # a line being written as we read
                continue
            if isinstance(event, dict) and belongs(event, root) and (when := _event_time(event)) is not None:
                candidates.append((when, _airflow_run_of(event), event))
    own = [when for when, run, _ in candidates if run == airflow_run_id]
    if not own:
        return []
    first = min(own)
    found = [(when, e) for when, run, e in candidates if run in (airflow_run_id, None) and when >= first]
    found.sort(key=lambda te: te[0])
    return [event for _, event in found]


def _airflow_run_of(event: dict) -> str | None:
    """The Airflow run id an event of the provider names (a task's or the DAG run's); None for dbt's."""
    facets = (event.get("run") or {}).get("facets") or {}
    for key in ("airflow", "airflowDagRun"):
        run_id = ((facets.get(key) or {}).get("dagRun") or {}).get("run_id")
        if run_id:
            return str(run_id)
    return None


def _event_time(event: dict) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(event.get("eventTime")))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def run_started(dag_run_start: dt.datetime | None, planned: dt.datetime | None) -> dt.datetime | None:
    """When the DAG run started: its start date under a scheduler. `airflow dags
    test` gives it the logical date instead (a backfilled date's is long past):
    then shortly before its plan task made the pipeline run id."""
    if planned is None:
        return None
    if isinstance(dag_run_start, dt.datetime) and dag_run_start.tzinfo is not None:
        if planned - dt.timedelta(hours=12) <= dag_run_start <= planned:  # 12 h: no night runs longer
            return dag_run_start
    return planned - dt.timedelta(minutes=2)


def planned_at(run_id: str) -> dt.datetime | None:
    """When the plan task made the pipeline run id (<ds>_<UTC start>Z)."""
    try:
        return dt.datetime.strptime(run_id.rsplit("_", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except (IndexError, ValueError):
        return None


def write_archive(run_id: str, events: list[dict], p: Paths) -> Path | None:
    """reports/<run_id>/lineage/events.jsonl, once, read-only. None when the
    run has no report (a folder here would stop its report being written) or
    no events; an archive already there (a retried report task) is kept."""
    report = p.reports / run_id
    if not (report / "report.json").is_file():
        log.warning("OpenLineage: run %s has no report in %s: its events are not archived", run_id, report)
        return None
    final = report / ARCHIVE_FOLDER
    if final.exists():
        log.info("OpenLineage: the events of run %s were archived already: %s", run_id, final)
        return final / ARCHIVE_FILE
    if not events:
        log.warning("OpenLineage: no events of run %s in %s (is lineage turned off?)", run_id, spool_dir(p))
        return None
    staging = report / f".{ARCHIVE_FOLDER}.{os.getpid()}.tmp"
    staging.mkdir(exist_ok=True)
    target = staging / ARCHIVE_FILE
    with open(target, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(target, READ_ONLY)
    os.rename(staging, final)
    log.info("OpenLineage: %d events of run %s archived in %s", len(events), run_id, final / ARCHIVE_FILE)
    return final / ARCHIVE_FILE


def archive(context: Any, run_id: str, p: Paths | None = None) -> Path | None:
    """The report task's last step: the run's events so far, next to its report. Never fails the task."""
    p = p or default_paths()
    try:
        if not active():
            return None
        if (p.reports / run_id / ARCHIVE_FOLDER).exists() or not (p.reports / run_id).is_dir():
            return write_archive(run_id, [], p)  # kept, or no report to archive beside: it says which
        ti = context["ti"]
        started = run_started(getattr(context.get("dag_run"), "start_date", None), planned_at(run_id))
        # a spool file last written before the run started holds none of its events
        not_before = started - dt.timedelta(seconds=1) if started else None
        return write_archive(run_id, run_events(root_run_id(ti), ti.run_id, p, not_before), p)
    except Exception:  # noqa: BLE001 - the run's report and publication stand without it
        log.warning("OpenLineage: the events of run %s were not archived", run_id, exc_info=True)
        return None
