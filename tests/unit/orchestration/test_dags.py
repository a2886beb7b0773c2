"""DAG integrity: the dags folder loads with no import errors, every DAG has an
owner and tags, and retries are what we decided per kind of task.

The DagBag is loaded in a subprocess with the project's Airflow environment
(airflow_env), so Airflow's configuration in this process never matters and
the test cannot touch a real AIRFLOW_HOME. Parse times are printed; the limit
lives in bench/bench_dag_parse.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from program_reporting.orchestration import dbt_models
from program_reporting.orchestration.airflow_env import DAGS_FOLDER, airflow_env

INSPECT = r"""
import json, time, datetime as dt
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Asset
t0 = time.monotonic()
bag = DagBag(dag_folder=DAGS_FOLDER)
total = time.monotonic() - t0
from program_reporting.orchestration import nightly
out = {
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "total_seconds": total,
    "files": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
    "dags": {},
    "dates": {ds: nightly.logical_date_for(ds).isoformat() for ds in ("2020-06-03", "2020-12-31")},
    "dates_new_york": {"2020-06-03": nightly.logical_date_for("2020-06-03", "America/New_York").isoformat()},
    "roundtrip": all(
        nightly.business_date(nightly.logical_date_for(d)) == d for d in ("2020-06-03", "2020-12-31", "2024-02-29")
    ),
}
for dag_id, dag in bag.dags.items():
    sched = dag.timetable
    out["dags"][dag_id] = {
        "tags": sorted(dag.tags),
        "owner": dag.owner,
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "doc_md": bool(dag.doc_md),
        "on_failure_callback": bool(dag.on_failure_callback),
        "on_success_callback": bool(dag.on_success_callback),
        "deadline": [
            {"reference": type(d.reference).__name__, "interval": d.interval.total_seconds(),
             "callback": d.callback.path, "kwargs": d.callback.kwargs}
            for d in (dag.deadline if isinstance(dag.deadline, list) else [dag.deadline] if dag.deadline else [])
        ],
        "timetable": type(sched).__name__,
        "cron": getattr(sched, "expression", None),
        "timezone": str(getattr(sched, "timezone", "")),
        "schedule_assets": sorted(a.name for a in getattr(dag, "schedule", []) if isinstance(a, Asset))
            if isinstance(getattr(dag, "schedule", None), (list, tuple)) else [],
        "tasks": {
            t.task_id: {
                "retries": t.retries,
                "retry_delay": t.retry_delay.total_seconds() if t.retry_delay else None,
                "trigger_rule": str(t.trigger_rule.value if hasattr(t.trigger_rule, "value") else t.trigger_rule),
                "owner": t.owner,
                "type": type(t).__name__,
                "mode": getattr(t, "mode", None),
                "poke_interval": getattr(t, "poke_interval", None) and float(
                    t.poke_interval.total_seconds() if hasattr(t.poke_interval, "total_seconds") else t.poke_interval),
                "timeout": getattr(t, "timeout", None),
                "outlets": sorted(a.name for a in t.outlets if isinstance(a, Asset)),
                "upstream": sorted(t.upstream_task_ids),
                "downstream": sorted(t.downstream_task_ids),
                "pool": t.pool,
                "priority_weight": t.priority_weight,
                "weight_rule": str(getattr(t.weight_rule, "value", t.weight_rule)),
            }
            for t in dag.tasks
        },
    }
    if dag_id.startswith("program_reporting_nightly"):
        # The tasks whose states decide the run's (Airflow's own rule: the effective leaves)
        from airflow.models.dagrun import DagRun
        class _TI:
            def __init__(self, task_id):
                self.task_id, self.state = task_id, None
        out["dags"][dag_id]["deciding"] = sorted(
            ti.task_id for ti in DagRun._tis_for_dagrun_state(None, dag=dag, tis=[_TI(t) for t in dag.task_ids]))
import sys
out["step_ids"] = next(
    m.STEP_IDS for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and m.__file__.endswith("program_reporting_nightly.py")
)
print("@@JSON@@" + json.dumps(out, default=str))
"""

SOURCES = ("merchants", "credit_events", "employment_reports")
MARTS = ["kpi_program_daily", "kpi_segment_daily", "kpi_target_progress"]
# the per-model status tasks: dbt.<layer>.<model>, one per .sql file of dbt_project/models
MODEL_TASKS = {f"dbt.{layer}.{model}" for layer, models in dbt_models.models().items() for model in models}


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """One DagBag load for the module (each costs a Python start and Airflow's import)."""
    home = tmp_path_factory.mktemp("dags")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAM_REPORTING_DROP", str(home / "drop"))
        mp.setenv("PROGRAM_REPORTING_HOME", str(home / "home"))
        mp.setenv("PROGRAM_REPORTING_SENSOR_POKE_SECONDS", "7")
        mp.setenv("PROGRAM_REPORTING_SENSOR_TIMEOUT_SECONDS", "42")
        mp.delenv("AIRFLOW_HOME", raising=False)
        env = airflow_env()
    proc = subprocess.run(
        [sys.executable, "-c", f"DAGS_FOLDER = {str(DAGS_FOLDER)!r}\n" + INSPECT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("@@JSON@@"))
    data = json.loads(line[len("@@JSON@@") :])
    # The AIRFLOW_HOME of the subprocess was the temporary one, never ~/airflow.
    assert env["AIRFLOW_HOME"] == str(home / "home" / "airflow")
    return data


def test_dags_folder_loads_without_errors(bag):
    for file, seconds in sorted(bag["files"].items()):
        print(f"parse time {file}: {seconds * 1000:.0f} ms")
    print(f"DagBag fill, both files: {bag['total_seconds']:.2f} s")
    assert bag["import_errors"] == {}
    # one nightly DAG per time zone of programs.csv (SPARK-2020 and SPRING-THUNDER-2020 share
    # Asia/Shanghai, PPP-2020 is on New York time), and the BI refresh
    assert set(bag["dags"]) == {
        "program_reporting_nightly",
        "program_reporting_nightly__america_new_york",
        "program_reporting_bi_refresh",
    }
    assert len(bag["files"]) == 2  # the nightly DAGs come from one file


def test_every_dag_has_owner_tags_and_docs(bag):
    for dag_id, dag in bag["dags"].items():
        assert "program-reporting" in dag["tags"], dag_id
        assert dag["owner"] == "program-reporting", dag_id
        assert dag["doc_md"], dag_id
        assert dag["max_active_runs"] == 1, dag_id
        assert dag["catchup"] is False, dag_id
        for task_id, task in dag["tasks"].items():
            assert task["owner"] == "program-reporting", (dag_id, task_id)


def test_nightly_schedule_is_0200_shanghai_and_one_run_per_business_date(bag):
    dag = bag["dags"]["program_reporting_nightly"]
    assert dag["timetable"] == "CronTriggerTimetable"
    assert dag["cron"] == "0 2 * * *"
    assert "Asia/Shanghai" in dag["timezone"]
    assert dag["on_failure_callback"] and dag["on_success_callback"]
    # ds 2020-06-03 is processed by the run of 2020-06-04 02:00 +08:00 = 2020-06-03 18:00 UTC
    assert bag["dates"]["2020-06-03"] == "2020-06-03T18:00:00+00:00"
    assert bag["dates"]["2020-12-31"] == "2020-12-31T18:00:00+00:00"
    assert bag["roundtrip"]


def test_each_program_time_zone_has_its_night_and_its_deadline(bag):
    """PPP-2020 (America/New_York in programs.csv) runs at 02:00 New York time; each
    calendar's figures are due at 06:00 local (4 h after the logical date), alerting the
    calendar's programs by name."""
    shanghai, new_york = (
        bag["dags"]["program_reporting_nightly"],
        bag["dags"]["program_reporting_nightly__america_new_york"],
    )
    assert new_york["cron"] == "0 2 * * *" and "America/New_York" in new_york["timezone"]
    assert set(new_york["tasks"]) == set(shanghai["tasks"])  # the same night, another calendar
    assert "PPP-2020" in new_york["tags"] and {"SPARK-2020", "SPRING-THUNDER-2020"} <= set(shanghai["tags"])
    for dag, programs, zone in (
        (shanghai, ["SPARK-2020", "SPRING-THUNDER-2020"], "Asia/Shanghai"),
        (new_york, ["PPP-2020"], "America/New_York"),
    ):
        assert dag["deadline"] == [
            {
                "reference": "DagRunLogicalDateDeadline",
                "interval": 4 * 3600.0,
                "callback": "program_reporting.orchestration.deadlines.figures_late",
                "kwargs": {"programs": programs, "time_zone": zone},
            }
        ]
    # 2020-06-03 in New York ends at 2020-06-04 04:00 UTC; its night runs at 02:00 EDT = 06:00 UTC
    assert bag["dates_new_york"]["2020-06-03"] == "2020-06-04T06:00:00+00:00"


def test_one_writer_across_calendars(bag):
    """Every task that reads or writes the warehouse or the published set takes the one
    slot of the pool program_reporting_warehouse; landing (per source, its own locks) does not."""
    writers = {"release_orphans", "gate_landed", "dbt_build", "stage_audit", "validate", "publish"}
    for dag_id in ("program_reporting_nightly", "program_reporting_nightly__america_new_york"):
        tasks = bag["dags"][dag_id]["tasks"]
        assert {t for t, v in tasks.items() if v["pool"] == "program_reporting_warehouse"} == writers, dag_id


# task id -> retries: deliberate per kind of task
NIGHTLY_RETRIES = {
    "plan": 0,
    "wait_for_earlier_night": 0,  # its timeout (the night's own limit) is the failure
    **{f"wait_for_{s}": 0 for s in SOURCES},  # the timeout is the failure; a retry would only wait again
    **{f"land_{s}": 2 for s in SOURCES},  # file I/O may fail transiently (a rejected delivery does not retry)
    "release_orphans": 2,
    "gate_landed": 0,  # a failed check is final
    "dbt_build": 1,  # dbt/DuckDB may fail transiently (lock, memory); once is enough
    "stage_audit": 2,
    "validate": 0,  # a failed check is final
    "publish": 2,  # atomic, so retrying is safe
    "report": 2,
    "end": 0,
    "retention": 0,  # never fails: what it cannot remove waits for the next night
    **dict.fromkeys(MODEL_TASKS, 0),  # they only read the build's results: a retry would read them again
}


def test_nightly_retries_are_deliberate(bag):
    tasks = bag["dags"]["program_reporting_nightly__america_new_york"]["tasks"]
    assert {t: v["retries"] for t, v in tasks.items()} == NIGHTLY_RETRIES
    tasks = bag["dags"]["program_reporting_nightly"]["tasks"]
    assert {t: v["retries"] for t, v in tasks.items()} == NIGHTLY_RETRIES
    for task_id, task in tasks.items():
        if task["retries"]:
            assert task["retry_delay"] == 30, task_id


def test_nightly_structure(bag):
    tasks = bag["dags"]["program_reporting_nightly"]["tasks"]
    for s in SOURCES:
        sensor = tasks[f"wait_for_{s}"]
        assert sensor["type"] == "DeliverySensor"
        assert sensor["mode"] == "reschedule"
        assert sensor["poke_interval"] == 7  # from PROGRAM_REPORTING_SENSOR_POKE_SECONDS
        assert sensor["timeout"] == 42  # from PROGRAM_REPORTING_SENSOR_TIMEOUT_SECONDS
        assert f"wait_for_{s}" in tasks[f"land_{s}"]["upstream"]
        assert tasks[f"wait_for_{s}"]["upstream"] == ["wait_for_earlier_night"]
        assert f"land_{s}" in tasks["release_orphans"]["upstream"]
    # Nights in date order: a backfill's night waits for the one before it, before anything else.
    guard = tasks["wait_for_earlier_night"]
    assert guard["type"] == "EarlierNightSensor" and guard["mode"] == "reschedule"
    assert guard["upstream"] == ["plan"] and guard["timeout"] == 12 * 3600
    chain = ["release_orphans", "gate_landed", "dbt_build", "stage_audit", "validate", "publish"]
    for before, after in zip(chain, chain[1:]):
        assert before in tasks[after]["upstream"], (before, after)
    assert tasks["publish"]["outlets"] == MARTS
    # The report always runs, after every step; the run fails when nothing was published.
    assert tasks["report"]["trigger_rule"] == "all_done"
    assert set(tasks["report"]["upstream"]) == set(tasks) - {"report", "end", "retention"} - MODEL_TASKS
    assert tasks["end"]["upstream"] == ["publish", "report"]
    assert tasks["end"]["trigger_rule"] == "all_success"
    # Retention follows the report and the per-model status tasks on every night, failed ones
    # too; it is not a step of the run, so the report never names it as one that failed.
    assert set(tasks["retention"]["upstream"]) == {"report"} | MODEL_TASKS
    assert tasks["retention"]["trigger_rule"] == "all_done"
    assert set(bag["step_ids"]) == set(tasks["report"]["upstream"])


def test_one_status_task_per_dbt_model_after_the_build_deciding_nothing(bag):
    """The group `dbt`: a task per model (by layer), after dbt_build whatever it did, not in
    the warehouse pool, weighing least; upstream of retention only, so Airflow decides the
    run's state from `end` and `retention` alone: a failed or skipped model task never fails
    a published night, nor turns a night that published nothing into a successful run."""
    assert len(MODEL_TASKS) >= 25 and "dbt.marts.kpi_program_daily" in MODEL_TASKS
    assert {t.split(".")[1] for t in MODEL_TASKS} == {"staging", "intermediate", "marts"}
    for dag_id in ("program_reporting_nightly", "program_reporting_nightly__america_new_york"):
        dag = bag["dags"][dag_id]
        tasks = dag["tasks"]
        assert {t for t in tasks if t.startswith("dbt.")} == MODEL_TASKS, dag_id
        for task_id in MODEL_TASKS:
            task = tasks[task_id]
            assert task["upstream"] == ["dbt_build"], task_id
            assert task["downstream"] == ["retention"], task_id
            assert task["trigger_rule"] == "all_done", task_id
            assert task["pool"] == "default_pool", task_id
            assert (task["priority_weight"], task["weight_rule"]) == (0, "absolute"), task_id
        assert dag["deciding"] == ["end", "retention"], dag_id
        # the main path still outweighs them
        assert all(tasks[t]["priority_weight"] >= 1 for t in tasks if t not in MODEL_TASKS)


def test_bi_refresh_is_scheduled_on_the_published_marts(bag):
    dag = bag["dags"]["program_reporting_bi_refresh"]
    assert dag["timetable"] == "AssetTriggeredTimetable"
    assert dag["schedule_assets"] == MARTS
    assert {t: v["retries"] for t, v in dag["tasks"].items()} == {"export_parquet": 1, "write_brief": 1}
    assert dag["tasks"]["write_brief"]["upstream"] == ["export_parquet"]


def test_the_nightly_end_leaves_the_heap_to_the_operating_system():
    """nightly.end (the last task of a published run) freezes every live object,
    so the interpreter's final collection has nothing to walk. Run in a child:
    a frozen heap must not leak into this test process."""
    code = (
        "import gc\n"
        "from program_reporting.orchestration import nightly\n"
        "heap = [[i] for i in range(100_000)]\n"
        "tracked = len(gc.get_objects())\n"
        "nightly.end()\n"
        "print(tracked, gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=airflow_env(), timeout=120, check=True
    )
    tracked, frozen, left = map(int, out.stdout.split()[-3:])
    assert tracked > 100_000
    assert frozen >= tracked
    assert left < 1_000
