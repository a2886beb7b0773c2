"""A real night's OpenLineage events, end to end: `program-reporting run` (Airflow's
`dags test`, the OpenLineage provider's listener, dbt, GX, DuckDB; nothing
mocked) on a small simulated delivery, then its archive,
reports/<run_id>/lineage/events.jsonl, read as a lineage graph: datasets
joined by the jobs that read and wrote them. From each source's drop folder
the graph reaches the published set through the raw layer, dbt's staging
models and the marts."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

from program_reporting.core.settings import SOURCES

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).with_name("program-reporting"))
DS = "2020-06-02"


@pytest.fixture
def airflow_paths(env_paths, monkeypatch):
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)  # default: <home>/airflow, private to the test
    for name in (
        "PROGRAM_REPORTING_OPENLINEAGE_URL",
        "OPENLINEAGE_URL",
        "AIRFLOW__OPENLINEAGE__TRANSPORT",
        "AIRFLOW__OPENLINEAGE__DISABLED",
        "AIRFLOW__OPENLINEAGE__NAMESPACE",
    ):
        monkeypatch.delenv(name, raising=False)
    return env_paths


def graph(events: list[dict]) -> dict[tuple, set[tuple]]:
    """dataset -> the datasets a job wrote after reading it (in the same run)."""
    runs: dict[str, dict] = {}
    for e in events:
        run = runs.setdefault(e["run"]["runId"], {"in": set(), "out": set()})
        run["in"] |= {(d["namespace"], d["name"]) for d in e.get("inputs") or []}
        run["out"] |= {(d["namespace"], d["name"]) for d in e.get("outputs") or []}
    edges: dict[tuple, set[tuple]] = {}
    for run in runs.values():
        for i in run["in"]:
            edges.setdefault(i, set()).update(run["out"] - {i})
    return edges


def path(edges: dict, start: tuple, goal: tuple) -> list[tuple] | None:
    came = {start: None}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        if node == goal:
            out = []
            while node is not None:
                out.append(node)
                node = came[node]
            return out[::-1]
        for nxt in sorted(edges.get(node, ())):
            if nxt not in came:
                came[nxt] = node
                todo.append(nxt)
    return None


def stage(p, dataset: tuple) -> str:
    namespace, name = dataset
    if namespace == "file" and name.startswith(str(p.drop)):
        return "drop"
    if namespace == "file" and name.startswith(str(p.raw)):
        return "raw"
    if namespace.startswith("duckdb://"):
        table = name.rsplit(".", 1)[-1]
        return {"stg": "staging", "int": "intermediate"}.get(table.split("_")[0], "marts")
    if name == str(p.audit):
        return "audit"
    if name.startswith(str(p.published)):
        return "published"
    return "other"


def test_a_nights_lineage_runs_from_the_drop_to_the_published_set(airflow_paths):
    p = airflow_paths
    from program_reporting.tools.simulate.simulator import simulate

    simulate(
        start=dt.date.fromisoformat(DS), days=1, merchants=200, seed=3, drop=p.drop, bad_row_share=0.0, progress=False
    )
    proc = subprocess.run([CLI, "run", "--ds", DS, "--no-bi-refresh"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (run_id,) = [d.name for d in p.runs.iterdir()]

    # The file transport, by default: every Airflow process appended to the spool.
    assert list((p.tmp / "lineage").glob("events*.jsonl"))

    archive = p.reports / run_id / "lineage" / "events.jsonl"
    events = [json.loads(line) for line in archive.read_text().splitlines()]
    assert [e["eventTime"] for e in events] == sorted(e["eventTime"] for e in events)
    assert archive.stat().st_mode & 0o777 == 0o444

    airflow = {
        e["job"]["name"].split(".", 1)[1] for e in events if e["job"]["name"].startswith("program_reporting_nightly.")
    }
    assert {"plan", *(f"land_{s}" for s in SOURCES), "dbt_build", "stage_audit", "validate", "publish"} <= airflow
    done = {e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"}
    assert "program_reporting_nightly.publish" in done  # up to publishing, its end included

    # dbt's jobs (one per model, one per model's tests) are children of the dbt_build task's run
    dbt_build_runs = {e["run"]["runId"] for e in events if e["job"]["name"] == "program_reporting_nightly.dbt_build"}
    dbt = [e for e in events if e["job"].get("facets", {}).get("jobType", {}).get("integration") == "DBT"]
    assert len(dbt) > 40
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in dbt} == dbt_build_runs
    assert {e["run"]["facets"]["parent"]["job"]["name"] for e in dbt} == {"program_reporting_nightly.dbt_build"}
    assert any(e["job"]["name"].endswith("stg_merchants.build.test") for e in dbt)

    edges = graph(events)
    current = ("file", str(p.current_db))
    for source in SOURCES:
        found = path(edges, ("file", str(p.drop / source)), current)
        assert found, f"no lineage from the {source} drop to {current}"
        stages = [stage(p, d) for d in found]
        assert [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]][:3] == ["drop", "raw", "staging"]
        assert stages.index("marts") > stages.index("staging")
        assert stages[-3:] == ["marts", "audit", "published"], found
        assert found[1] == ("file", str(p.raw / source))
        assert found[2][1] == f"warehouse.main.stg_{source}"
        assert found[-3][1].startswith("warehouse.main.kpi_")

    # The report stays as published: the index's checksums still name its two files.
    entry = [json.loads(line) for line in (p.reports / "index.jsonl").read_text().splitlines()][-1]
    assert entry["run_id"] == run_id
    for name in ("report.json", "report.html"):
        digest = hashlib.sha256((p.reports / run_id / name).read_bytes()).hexdigest()
        assert entry[f"{name.replace('.', '_')}_sha256"] == digest

    # Re-running the date: the provider gives the new run the same OpenLineage run ids
    # (same DAG, logical date and clear number); its archive holds its own events only.
    first = archive.read_bytes()
    proc = subprocess.run([CLI, "run", "--ds", DS, "--no-bi-refresh"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (rerun,) = [d.name for d in p.runs.iterdir() if d.name != run_id]
    airflow_run = json.loads((p.reports / rerun / "report.json").read_text())["airflow_run_id"]
    again = [json.loads(line) for line in (p.reports / rerun / "lineage" / "events.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in again if e["job"]["name"] == "program_reporting_nightly.plan"] == [
        "START",
        "COMPLETE",
    ]
    named = {
        (e["run"]["facets"].get("airflow") or e["run"]["facets"].get("airflowDagRun"))["dagRun"]["run_id"]
        for e in again
        if "airflow" in e["run"]["facets"] or "airflowDagRun" in e["run"]["facets"]
    }
    assert named == {airflow_run}
    assert len([e for e in again if e["eventType"] == "START" and "build.run" in e["job"]["name"]]) == len(
        [e for e in events if e["eventType"] == "START" and "build.run" in e["job"]["name"]]
    )
    assert archive.read_bytes() == first
