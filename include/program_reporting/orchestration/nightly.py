"""The nightly run as Airflow sees it: delivery sensor, steps, assets.

`dags/program_reporting_nightly.py` wires these together; the pipeline's
own modules do the work: landing, the dbt build, and the steps of the
write-audit-publish path (publishing/wap.py: gates, staging, publishing,
the report), each step a task here, in the path's order.
Everything heavy is imported inside the functions, so that parsing the DAG
file stays fast (bench/bench_dag_parse.py). The schedule and the business
date of a run are in business_date.py.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, NoReturn

from airflow.sdk import Asset, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from program_reporting.core.contract import CONTROL_FILE
from program_reporting.core.settings import SOURCES, paths
from program_reporting.orchestration import lineage
from program_reporting.orchestration.airflow_env import in_dags_test
from program_reporting.orchestration.business_date import (  # noqa: F401 - re-exported for the DAG files
    PROGRAM_TIME_ZONE,
    SCHEDULE_CRON,
    business_date,
    calendar_of_dag,
    logical_date_for,
    new_run_id,
)

log = logging.getLogger(__name__)

MARTS = ("kpi_program_daily", "kpi_segment_daily", "kpi_target_progress")
ASSET_GROUP = "program_reporting"
FAILURE_KEY = "failure"  # XCom key under which a failing step leaves its message for the report


# --- business date ------------------------------------------------------------


def dag_id_of(context: Any) -> str | None:
    dag = context.get("dag")
    return getattr(dag, "dag_id", None) or getattr(context.get("dag_run"), "dag_id", None)


def ds_of(context: Any) -> str:
    """The business date of the run: the day before its logical date, in its DAG's calendar."""
    return business_date(context["logical_date"], calendar_of_dag(dag_id_of(context)).time_zone)


# --- assets -----------------------------------------------------------------


def mart_assets() -> list[Asset]:
    """The three published marts, as Airflow Assets.

    Named by table; the URI points at the published current.duckdb with the
    table as a query parameter (Airflow's file-URI normalizer drops a
    `#fragment`, which would make the three URIs collide)."""
    current = paths().current_db
    return [Asset(name=table, uri=f"{current.as_uri()}?table={table}", group=ASSET_GROUP) for table in MARTS]


# --- the delivery sensor ----------------------------------------------------------


class DeliverySensor(BaseSensorOperator):
    """Waits for `<drop>/<source>/ds=<ds>/_control.json` (written last by the source).

    On timeout it fails without retrying, naming the missing delivery."""

    template_fields = ()
    ui_color = "#e8f4ea"

    def __init__(self, *, source: str, **kwargs: Any) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        super().__init__(**kwargs)
        self.source = source

    def control_file(self, context: Any):
        return paths().delivery_dir(self.source, ds_of(context)) / CONTROL_FILE

    def poke(self, context: Any) -> bool:
        control = self.control_file(context)
        found = os.path.lexists(control)  # a folder or FIFO there is landing's to refuse, not to wait for
        self.log.info(
            "%s delivery for ds=%s: %s %s", self.source, ds_of(context), control, "found" if found else "not there yet"
        )
        return found

    def execute(self, context: Any) -> Any:
        if is_backfill(context):
            # A past date's delivery is in the drop or will not come by waiting:
            # look once, and say what to do if it is missing.
            if self.poke(context):
                return None
            message = (
                f"missing delivery: {self.source} for ds={ds_of(context)} - "
                f"{self.control_file(context)} is not in the drop, and a backfill does not wait "
                "for deliveries: deliver it, then clear this run"
            )
            record_failure(context, message)
            raise AirflowSensorTimeout(message)
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            message = (
                f"missing delivery: {self.source} for ds={ds_of(context)} - "
                f"{self.control_file(context)} did not appear within {self.timeout:g} s"
            )
            record_failure(context, message)
            raise AirflowSensorTimeout(message) from exc


def is_backfill(context: Any) -> bool:
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return str(getattr(run_type, "value", run_type)) == "backfill"


# --- nights in date order -----------------------------------------------------------

FINISHED = ("success", "failed")


class EarlierNightSensor(BaseSensorOperator):
    """Waits until the run of the DAG's previous business date has finished.

    A backfill starts up to its max-active-runs nights at once (10 by default in
    the UI), and the warehouse pool orders their tasks by weight, not by date:
    without this wait, a night could build and publish before the night
    before it, which its own figures build on. Each night waits for its
    predecessor (success or failure: a failed night does not stop the ones
    after it, as on the schedule), so the dates publish one after another, in
    order. On the schedule (one run at a time) and under `program-reporting
    run` (dates in order, in one process) the predecessor has always ended."""

    template_fields = ()
    ui_color = "#eef0f8"

    def poke(self, context: Any) -> bool:
        if in_dags_test():
            return True
        previous = context["ti"].get_previous_dagrun()
        state = str(getattr(getattr(previous, "state", None), "value", getattr(previous, "state", None)))
        if previous is None or state in FINISHED:
            return True
        self.log.info(
            "ds=%s waits for the night before it: run %s (logical date %s) is %s",
            ds_of(context),
            previous.run_id,
            previous.logical_date,
            state,
        )
        return False

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            previous = context["ti"].get_previous_dagrun()
            message = (
                f"ds={ds_of(context)} waited {self.timeout:g} s for the night before it "
                f"(run {getattr(previous, 'run_id', '?')}, still {getattr(previous, 'state', '?')}): "
                "nights publish in date order; end or mark that run, then clear this one "
                "(a backfill runs forwards: --run-backwards would wait like this)"
            )
            record_failure(context, message)
            raise AirflowSensorTimeout(message) from exc


# --- steps ------------------------------------------------------------------


def record_failure(context: Any, message: str) -> None:
    """Leave a step's failure message where the report task can read it."""
    try:
        context["ti"].xcom_push(key=FAILURE_KEY, value=message[:4000])
    except Exception:  # the message is also in the task log; never mask the real error
        log.warning("could not record the failure message of %s", context["ti"].task_id, exc_info=True)


def plan(context: Any) -> dict[str, str]:
    ds = ds_of(context)
    run_id = new_run_id(ds)
    log.info("nightly run for business date %s, pipeline run id %s", ds, run_id)
    lineage.ensure_spool()  # where a deployment's first night has none yet (airflow_env.ensure_db makes it)
    return {"ds": ds, "run_id": run_id}


def land(source: str, ds: str, context: Any) -> dict:
    from program_reporting.landing import land as landing

    try:
        record = landing.land(source, ds)
    except landing.DeliveryRejected as exc:
        # A rejected delivery will be rejected again: fail now, no retries.
        message = f"delivery rejected: {source} ds={ds}: {exc}"
        record_failure(context, message)
        raise AirflowFailException(message) from exc
    except Exception as exc:
        record_failure(context, f"landing {source} ds={ds} failed: {exc!r}")
        raise
    lineage.landed(context, record)
    return record


def release_orphans(ds: str, context: Any) -> dict:
    from program_reporting.landing import land as landing

    try:
        summary = landing.release_orphans(ds)
    except Exception as exc:
        record_failure(context, f"releasing held orphans for ds={ds} failed: {exc!r}")
        raise
    lineage.released(context, summary)
    return summary


def fail_validation(context: Any, message: str) -> NoReturn:
    record_failure(context, message)
    raise AirflowFailException(message)


def _summary(result: Any) -> dict:
    """A small JSON-able view of a gate result for XCom (the full one is in the report)."""
    full = result.to_dict() if hasattr(result, "to_dict") else {"passed": bool(getattr(result, "passed", False))}
    return {k: v for k, v in full.items() if k != "results"}


def gate_landed(ds: str, run_id: str, context: Any) -> dict:
    from program_reporting.publishing import wap

    try:
        result = wap.gate_landed(run_id, ds)
    except Exception as exc:  # a gate that cannot run blocks, and rerunning will not help
        fail_validation(context, f"the landed gate for ds={ds} could not run: {exc}")
    summary = _summary(result)
    lineage.gated_landed(context, ds)
    if not result.passed:
        fail_validation(context, f"landed extracts of ds={ds} failed validation: {_why(result, summary)}")
    return summary


def dbt_build(ds: str, run_id: str, context: Any) -> dict:
    from program_reporting.warehouse import build

    started = time.time()
    try:
        built = build.build(ds, run_id)
    except build.BuildFailed as exc:
        lineage.dbt_built(context, since=started)  # what ran: models done or failed, the tests' results
        message = f"dbt build for ds={ds} failed: {exc}"
        if exc.nodes and all(n.startswith(("test.", "unit_test.")) for n in exc.nodes):
            # Only dbt tests failed: a failed check, which a retry would only repeat.
            fail_validation(context, message)
        record_failure(context, message)
        raise
    except Exception as exc:
        record_failure(context, f"dbt build for ds={ds} failed: {exc}")
        raise
    lineage.dbt_built(context, since=started)
    return built


def stage_audit(run_id: str, ds: str, context: Any) -> str:
    from program_reporting.publishing import wap

    try:
        staged = wap.stage(run_id, ds)
    except Exception as exc:
        record_failure(context, f"staging the audit set of run {run_id} failed: {exc}")
        raise
    lineage.staged(context, run_id)
    return str(staged)


def validate(run_id: str, ds: str, context: Any) -> dict:
    from program_reporting.publishing import wap

    try:
        result = wap.gate_marts(run_id, ds)
    except Exception as exc:
        fail_validation(context, f"the validation gate of run {run_id} could not run: {exc}")
    summary = _summary(result)
    lineage.validated(context, run_id)
    if not result.passed:
        fail_validation(context, f"validation of run {run_id} (ds={ds}) failed: {_why(result, summary)}")
    return summary


def _why(result: Any, summary: dict) -> str:
    reason = getattr(result, "reason", None)
    reason = reason() if callable(reason) else reason
    return str(reason or summary.get("reason") or "a critical expectation failed or evaluated nothing")


def publish(run_id: str, ds: str, context: Any) -> str:
    """Publish the validated set: PostgreSQL in the production profile, then the
    files with the report (wap.publish: the report is in place before
    current.duckdb is swapped; if it cannot be written, nothing is published)."""
    from program_reporting.publishing import wap
    from program_reporting.validation.candidate import GateBlocked

    try:
        published = wap.publish(run_id, airflow_run_id=context["ti"].run_id)
    except GateBlocked as exc:  # the gate on PostgreSQL: a failed check, which a retry would only repeat
        fail_validation(context, f"publishing run {run_id} failed: {exc}")
    except Exception as exc:
        record_failure(context, f"publishing run {run_id} failed: {exc}")
        raise
    # The asset events say which run and business date they carry, so that
    # consumers (the BI refresh) and the UI can tell them apart.
    outlet_events = context["outlet_events"]
    for asset in mart_assets():
        outlet_events[asset].extra = {"run_id": run_id, "ds": ds, "published": str(published)}
    lineage.published(context, run_id)
    return str(published)


def report(plan_: dict | None, step_ids: list[str], context: Any) -> str:
    """The run's report, published or withheld (runs whatever happened upstream).

    A published run's report was written by the publish task, before the
    swap: here it only makes sure the index lists it. A run that published
    nothing gets its withheld report, with the failing step's message and
    every gate that ran."""
    from program_reporting.publishing import wap
    from program_reporting.reporting import report as reporting

    ti = context["ti"]
    ds = (plan_ or {}).get("ds") or ds_of(context)
    run_id = (plan_ or {}).get("run_id") or new_run_id(ds)
    states = _task_states(ti)
    published = bool(ti.xcom_pull(task_ids="publish")) and states.get("publish") == "success"
    if published:
        path = paths().reports / run_id / "report.html"
        if not path.exists():
            raise FileNotFoundError(f"run {run_id} was published without its report {path}")
        try:
            reporting.index_reports()
        except Exception:  # published with its report; the next report written adds the entry
            log.warning("run %s: its report is not in the index yet", run_id, exc_info=True)
    else:
        failures = {}
        for task_id in step_ids:
            message = ti.xcom_pull(task_ids=task_id, key=FAILURE_KEY)
            if message:
                failures[task_id] = message
        not_ok = [t for t in step_ids if states.get(t) not in ("success", None)]
        reason = "; ".join(failures.values()) or (
            "steps did not succeed: " + ", ".join(f"{t} ({states.get(t)})" for t in not_ok)
            if not_ok
            else "publishing did not happen"
        )
        path = wap.withhold(run_id, ds, wap.kept_gates(run_id), reason, airflow_run_id=ti.run_id)
        log.warning("nothing published for ds=%s: %s", ds, reason)
    wap.forget_gates(run_id)
    # the run's OpenLineage events up to this task, beside its report (never fails the task)
    lineage.archive(context, run_id)
    log.info("report of run %s (%s): %s", run_id, "published" if published else "withheld", path)
    return str(path)


def retention() -> dict:
    """After the report, whatever the night's outcome: the retention policy
    (publishing/retention.py). Never fails the run (a failed task would fail a
    published night and alert that nothing was published): a path it cannot
    remove, a wrong setting, even the task's time limit, is logged, and the
    next night removes what is left."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    from program_reporting.orchestration.airflow_env import airflow_log_folder
    from program_reporting.publishing import retention as policy

    p = paths()

    def logged(entry) -> None:  # as each goes: a task stopped at its time limit has said what went
        (log.warning if entry.error else log.info)("retention: %s", policy.line(entry, p))

    try:
        plan, done = policy.apply(p, airflow_log_folder(), each=logged)
    except (Exception, AirflowTaskTimeout) as exc:  # noqa: BLE001 - retention must never fail the night
        log.error(
            "retention did not finish (%s: %s); what is left goes next night", type(exc).__name__, exc, exc_info=True
        )
        return {"removed": None, "bytes": None, "failed": None, "error": True}
    for note in plan.kept:
        log.info("retention: kept %s", note)
    removed = [e for e in done if not e.error]
    return {
        "removed": len(removed),
        "bytes": sum(e.size_bytes for e in removed),
        "failed": len(done) - len(removed),
        "error": False,
    }


def end() -> None:
    """The run's last step, reached only when it published.

    Freezes the garbage collector's view of every live object: under
    `program-reporting run` (`airflow dags test`) every task runs in one
    process, and the interpreter's final collection at exit walks all that
    dbt, Great Expectations and Airflow built (3 s at 1,000,000 merchants,
    after the figures are published). Frozen objects are left to the
    operating system. A task process of a scheduled run exits right after
    this as well."""
    import gc

    gc.freeze()


def _task_states(ti: Any) -> dict[str, str]:
    try:
        by_run = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
    except Exception:
        log.warning("could not read the task states of %s", ti.run_id, exc_info=True)
        return {}
    states = by_run.get(ti.run_id, by_run) if isinstance(by_run, dict) else {}
    return {str(k): str(getattr(v, "value", v)) for k, v in states.items()}
