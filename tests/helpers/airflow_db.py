"""Read Airflow's metadata database the way the scheduler left it, in a child
process with the project's Airflow environment (the test process has its own
settings). No tests here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent

QUERY = r"""
import json
from sqlalchemy import select
from airflow.utils.session import create_session
from airflow.models.asset import AssetEvent, AssetModel, AssetDagRunQueue
from airflow.models.dagrun import DagRun
from airflow.models.serialized_dag import SerializedDagModel
from airflow.models.dag import DagModel
from airflow.models.taskinstance import TaskInstance
with create_session() as s:
    events = [{"asset": a.name, "uri": a.uri, "extra": e.extra, "source_dag_id": e.source_dag_id,
               "source_task_id": e.source_task_id}
              for e, a in s.execute(select(AssetEvent, AssetModel).join(AssetModel, AssetEvent.asset_id == AssetModel.id))]
    queued = [q.target_dag_id for q in s.scalars(select(AssetDagRunQueue))]
    runs = [{"dag_id": r.dag_id, "run_type": str(r.run_type), "state": str(r.state), "run_id": r.run_id,
             "consumed": len(r.consumed_asset_events), "logical_date": r.logical_date,
             "start_date": r.start_date, "end_date": r.end_date, "backfill_id": r.backfill_id}
            for r in s.scalars(select(DagRun).order_by(DagRun.logical_date))]
    tasks = [{"dag_id": t.dag_id, "run_id": t.run_id, "task_id": t.task_id, "state": str(t.state),
              "start_date": t.start_date, "end_date": t.end_date}
             for t in s.scalars(select(TaskInstance))]
    serialized = sorted(d.dag_id for d in s.scalars(select(SerializedDagModel)))
    paused = {d.dag_id: d.is_paused for d in s.scalars(select(DagModel))}
print("@@JSON@@" + json.dumps({"events": events, "queued": queued, "runs": runs, "tasks": tasks,
                              "serialized": serialized, "paused": paused}, default=str))
"""


def airflow_state(env: dict, ready: bool = True) -> dict | None:
    """Asset events, queued asset-triggered DAGs, DAG runs (by logical date), task
    instances, serialized DAG ids and paused flags. With ready=False, None while the
    database cannot answer yet (Airflow is still creating it)."""
    proc = subprocess.run([str(BIN / "python"), "-c", QUERY], env=env, capture_output=True, text=True, timeout=300)
    if not ready and proc.returncode != 0:
        return None
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("@@JSON@@"))
    return json.loads(line[len("@@JSON@@") :])


def finished(state: str) -> bool:
    return state.lower().rsplit(".", 1)[-1] in ("success", "failed")


def succeeded(state: str) -> bool:
    return state.lower().rsplit(".", 1)[-1] == "success"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
