"""Airflow DAGs `program_reporting_nightly` (and `program_reporting_nightly__<zone>`):
one nightly DAG per program time zone in programs.csv, one run per business date (ds).

Thin on purpose: the steps live in `program_reporting.orchestration.nightly` and the
pipeline modules it calls; nothing heavy is imported while the DAG file is
parsed (bench/bench_dag_parse.py measures it).
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import CronTriggerTimetable, TaskGroup, TriggerRule, dag, task
from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

from program_reporting.core.settings import SOURCES
from program_reporting.orchestration import alerts, dbt_models, deadlines, nightly
from program_reporting.orchestration.airflow_env import (
    WAREHOUSE_POOL,
    in_dags_test,
    sensor_poke_seconds,
    sensor_timeout_seconds,
)
from program_reporting.orchestration.business_date import NIGHT_TIMEOUT, Calendar, calendars

# Retries are deliberate and per kind of step (tests/unit/orchestration/test_dags.py pins them):
# I/O and dbt may fail transiently and are retried; a failed check never is
# (the gate raises AirflowFailException, which skips the remaining retries).
RETRIES_IO = 2
RETRIES_DBT = 1
RETRY_DELAY = dt.timedelta(seconds=30)
# The tasks that read or write the warehouse and the published set take this pool's one slot:
# nights of different calendars may overlap, and DuckDB has one writer. A task waiting for the
# slot shows as "scheduled" with the pool named in the UI; downstream tasks weigh more, so the
# night that is further along goes first.
WAREHOUSE = {"pool": WAREHOUSE_POOL, "weight_rule": "upstream"}
# The per-model status tasks only read a JSON file: no pool, and the lowest weight, so that
# a scheduler runs the night's main path (staging, gate, publish) first.
STATUS = {"priority_weight": 0, "weight_rule": "absolute", "execution_timeout": dt.timedelta(minutes=5)}
# A backfill's later nights wait for the earlier ones; each look is a task start (reschedule mode).
EARLIER_NIGHT_POKE = 60.0

DOC_MD = """
### Nightly warehouse run: {programs} ({time_zone})

For the business date **ds** that has just ended in the calendar of
{programs} ({time_zone}, from programs.csv): the run scheduled at 02:00
local time on day D processes ds = D - 1. The figures are due by 06:00 local
time: a Deadline Alert names what is missing or failed if they are not
published by then. One such DAG per time zone of programs.csv.

1. `wait_for_earlier_night`: nights publish in date order; in a backfill each
   night waits for the one before it to end (success or failure).
   `wait_for_<source>`: waits for each source's `_control.json`
   (reschedule mode; `PROGRAM_REPORTING_SENSOR_POKE_SECONDS`,
   `PROGRAM_REPORTING_SENSOR_TIMEOUT_SECONDS`). A timeout names the missing
   delivery. A backfill's night does not wait: a past date's delivery is in
   the drop or it is reported missing at once.
2. `land_<source>` (in parallel), then `release_orphans`.
3. `gate_landed`: Great Expectations on the landed extracts.
4. `dbt_build`: `dbt build` (models and their tests) into the DuckDB warehouse.
   After it, the group `dbt` shows each model of that build as a task of its
   own (`dbt.<layer>.<model>`): success (warnings in its log), failed (the
   model or one of its tests failed: named, with dbt's message) or skipped
   (dbt skipped it, naming what failed upstream; or the build did not run).
   Its log gives the model's and each test's status and time. They read the
   build's results only, and never gate publishing nor decide the night.
5. `stage_audit` -> `validate` (the GX gate; a failure is final, no retries)
   -> `publish` (in the production profile the set is staged and gated
   again in PostgreSQL; then the files, atomically; then PostgreSQL's serving
   schema switches; emits the three `kpi_*` Assets). The report of a published run is part of publishing: in
   place before `current.duckdb` is swapped; if it cannot be written, nothing
   is published. These are the steps of `program_reporting.publishing.wap`,
   the path `program-reporting publish` runs in one process.
6. `report`: always runs; writes the validation report of a run that published
   nothing (with the failing step's message and every gate that ran), and
   checks that the index lists a published run's report.
7. `end`: fails the run when nothing was published, so the failure callback
   alerts the operators (once per run: alerts log, webhook, e-mail when
   `PROGRAM_REPORTING_ALERT_EMAILS` is set); the next run that publishes sends
   one recovery notice.
8. `retention`: after the report, whatever happened: removes what the
   retention policy says has outlived its use (old audit sets of withheld
   runs, temp files, Airflow logs, landing failures; never a published set, a
   report or the index). It never fails the run: what it cannot remove is logged.

Re-running a date is safe: every step replaces exactly that date's partition.
"""


def nightly_tasks():
    """The night's tasks; nightly_dag gives them a calendar."""

    @task(retries=0)
    def plan(**context) -> dict:
        return nightly.plan(context)

    @task(retries=RETRIES_IO, execution_timeout=dt.timedelta(minutes=30))
    def land(source: str, run: dict, **context) -> dict:
        return nightly.land(source, run["ds"], context)

    @task(retries=RETRIES_IO, execution_timeout=dt.timedelta(minutes=30), **WAREHOUSE)
    def release_orphans(run: dict, **context) -> dict:
        return nightly.release_orphans(run["ds"], context)

    @task(retries=0, execution_timeout=dt.timedelta(minutes=30), **WAREHOUSE)
    def gate_landed(run: dict, **context) -> dict:
        return nightly.gate_landed(run["ds"], run["run_id"], context)

    @task(retries=RETRIES_DBT, execution_timeout=dt.timedelta(hours=2), **WAREHOUSE)
    def dbt_build(run: dict, **context) -> dict:
        return nightly.dbt_build(run["ds"], run["run_id"], context)

    @task(retries=RETRIES_IO, execution_timeout=dt.timedelta(minutes=30), **WAREHOUSE)
    def stage_audit(run: dict, **context) -> str:
        return nightly.stage_audit(run["run_id"], run["ds"], context)

    @task(retries=0, execution_timeout=dt.timedelta(minutes=30), **WAREHOUSE)
    def validate(run: dict, **context) -> dict:
        return nightly.validate(run["run_id"], run["ds"], context)

    @task(retries=RETRIES_IO, outlets=nightly.mart_assets(), execution_timeout=dt.timedelta(minutes=10), **WAREHOUSE)
    def publish(run: dict, **context) -> str:
        return nightly.publish(run["run_id"], run["ds"], context)

    @task(retries=RETRIES_IO, trigger_rule=TriggerRule.ALL_DONE, execution_timeout=dt.timedelta(minutes=10))
    def report(**context) -> str:
        # Reads the plan itself: it must run even when no upstream result exists.
        return nightly.report(context["ti"].xcom_pull(task_ids="plan"), STEP_IDS, context)

    @task(retries=0, trigger_rule=TriggerRule.ALL_DONE, execution_timeout=dt.timedelta(minutes=30))
    def retention() -> dict:
        # Not a step of the run (not in STEP_IDS): it runs after the report, and
        # the next night retries whatever it could not remove.
        return nightly.retention()

    @task(retries=0, trigger_rule=TriggerRule.ALL_DONE, **STATUS)
    def model_status(name: str, **context) -> None:
        dbt_models.status(name, context)

    @task(retries=0)
    def end(published: str, report_path: str) -> None:
        """Succeeds only when the run published; otherwise upstream_failed fails the run."""
        nightly.end()

    run = plan()
    in_order = nightly.EarlierNightSensor(
        task_id="wait_for_earlier_night",
        mode="reschedule",
        poke_interval=EARLIER_NIGHT_POKE,
        timeout=NIGHT_TIMEOUT.total_seconds(),  # no night lasts longer (dagrun_timeout)
        retries=0,
    )
    run >> in_order
    sensors = [
        nightly.DeliverySensor(
            task_id=f"wait_for_{source}",
            source=source,
            mode="reschedule",
            poke_interval=sensor_poke_seconds(),
            timeout=sensor_timeout_seconds(),
            retries=0,
        )
        for source in SOURCES
    ]
    landed = []
    for source, sensor in zip(SOURCES, sensors):
        landing = land.override(task_id=f"land_{source}")(source, run)
        in_order >> sensor >> landing
        landed.append(landing)
    released = release_orphans(run)
    landed >> released
    checked = gate_landed(run)
    built = dbt_build(run)
    staged = stage_audit(run)
    validated = validate(run)
    published = publish(run)
    released >> checked >> built >> staged >> validated >> published
    reported = report()
    [run, in_order, *sensors, *landed, released, checked, built, staged, validated, published] >> reported
    end(published, reported)
    # One status task per dbt model of the night's build, by layer. Upstream of retention
    # only (all_done), never of end: a model's state never decides the night's.
    with TaskGroup(dbt_models.GROUP, tooltip="each dbt model of the night's build, from its results") as models:
        for layer, names in dbt_models.models().items():
            with TaskGroup(layer):
                for name in names:
                    model_status.override(task_id=name)(name)
    built >> models
    [reported, models] >> retention()


STEP_IDS = (
    ["plan", "wait_for_earlier_night"]
    + [f"wait_for_{s}" for s in SOURCES]
    + [f"land_{s}" for s in SOURCES]
    + ["release_orphans", "gate_landed", "dbt_build", "stage_audit", "validate", "publish"]
)


def nightly_dag(calendar: Calendar):
    names = ", ".join(calendar.programs) or "no program yet"
    return dag(
        dag_id=calendar.dag_id,
        description=f"Land, build, validate and publish the program KPIs for one business date ({calendar.time_zone})",
        schedule=CronTriggerTimetable(nightly.SCHEDULE_CRON, timezone=calendar.time_zone),
        start_date=pendulum.datetime(2020, 1, 1, tz=calendar.time_zone),
        catchup=False,  # backfill explicitly: `airflow backfill create` or `program-reporting run --from --to`
        max_active_runs=1,  # DuckDB has one writer: never two nights of a calendar at once (and the pool)
        dagrun_timeout=NIGHT_TIMEOUT,
        default_args={
            "owner": "program-reporting",
            "retries": 0,
            "retry_delay": RETRY_DELAY,
        },
        tags=["program-reporting", "nightly", "publish", *calendar.programs],
        doc_md=DOC_MD.format(programs=names, time_zone=calendar.time_zone),
        # one alert per failed run, one recovery notice when the next run publishes (alerts.py)
        on_failure_callback=alerts.NightlyRunNotifier("failed"),
        on_success_callback=alerts.NightlyRunNotifier("published"),
        # figures due by 06:00 local: 4 h after the 02:00 logical date (deadlines.py)
        deadline=None if in_dags_test() else figures_due(calendar),
    )(nightly_tasks)()


def figures_due(calendar: Calendar) -> DeadlineAlert:
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=deadlines.ALERT_AFTER_LOGICAL_DATE,
        callback=AsyncCallback(
            "program_reporting.orchestration.deadlines.figures_late",
            kwargs=deadlines.deadline_kwargs(calendar.programs, calendar.time_zone),
        ),
    )


for _calendar in calendars():
    globals()[_calendar.dag_id] = nightly_dag(_calendar)
