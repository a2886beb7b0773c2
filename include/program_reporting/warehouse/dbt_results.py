"""The night's dbt results, model by model: what the nightly DAG's per-model
status tasks (orchestration/dbt_models.py) show in the Airflow UI.

The build keeps its `dbt build`'s results in a folder of the run's own,
`tmp/dbt_runs/<run_id>/`, whether the build succeeds or fails: dbt's
`run_results.json`, unchanged, and `nodes.json`, what run_results.json does
not say: which model or seed each node reads and which one each test tests.
warehouse/dbt_target/ is no place to read them from: a retry, the other
calendar's night or a hand-run `program-reporting build` writes there before a
status task of this night may have read it. Retention removes the folder with
the rest of tmp/ (24 hours).

A model's outcome is its own result and those of its tests: the generic
tests on it (dbt's `attached_node`), the unit tests and singular tests that
read it (a singular test reading several models counts for each). A test
that reads no model or seed (one that checks a macro) belongs to none: the
build's own log and error name it. Standard library only: the status tasks
import this at their start.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

RUNS_DIR = "dbt_runs"  # under the home's tmp/
RUN_RESULTS = "run_results.json"
NODES = "nodes.json"
FAILED = frozenset({"error", "fail", "runtime error"})  # what fails a build (build.py)
OWNERS = ("model", "seed")  # what tests test (the nightly DAG has a task per model)
TESTS = ("test", "unit_test")


def folder(tmp: Path, run_id: str) -> Path:
    """Where the build of run `run_id` keeps its results (tmp: the home's tmp/).
    A run id that cannot name a folder (a hand-run build's --run-id) is quoted."""
    name = run_id if run_id and "/" not in run_id and run_id not in (".", "..") else quote(run_id or "-", safe="") + "_"
    return tmp / RUNS_DIR / name


def forget(where: Path) -> None:
    """Before a build: an earlier try's results must not pass for this one's."""
    shutil.rmtree(where, ignore_errors=True)


def keep(execution_result: Any, where: Path) -> Path | None:
    """Write `dbt build`'s results (dbtRunnerResult.result) into `where`; None
    when dbt produced none (it stopped before running a node)."""
    if execution_result is None or not hasattr(execution_result, "write"):
        return None
    where.mkdir(parents=True, exist_ok=True)
    nodes = {}
    for r in getattr(execution_result, "results", None) or []:
        node = getattr(r, "node", None)
        if node is None:
            continue
        nodes[node.unique_id] = {
            "name": node.name,
            "resource_type": str(getattr(node.resource_type, "value", node.resource_type)),
            "attached_node": getattr(node, "attached_node", None),
            "depends_on": list(getattr(getattr(node, "depends_on", None), "nodes", None) or []),
        }
    tmp = where / f".{NODES}.tmp"
    tmp.write_text(json.dumps(nodes, indent=1), encoding="utf-8")
    os.replace(tmp, where / NODES)
    tmp = where / f".{RUN_RESULTS}.tmp"
    execution_result.write(str(tmp))  # dbt's own artifact, as it writes it into its target
    os.replace(tmp, where / RUN_RESULTS)  # last: its presence means the folder is complete
    return where / RUN_RESULTS


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    name: str
    resource_type: str
    status: str
    seconds: float
    message: str
    adapter_response: dict
    failures: int | None

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def label(self) -> str:
        """'test not_null_…', 'unit test …', 'model …', 'seed …'."""
        return f"{self.resource_type.replace('_', ' ')} {self.name}"

    def describe(self) -> str:
        """One line: status, time, name and dbt's message (what a log line needs)."""
        text = f"{self.status:<7} {self.seconds:6.2f} s  {self.label}"
        return text + (f": {self.message}" if self.message and self.status not in ("pass", "success") else "")

    def verdict(self) -> str:
        return f"{self.label} {self.status}" + (f": {self.message}" if self.message else "")


@dataclass
class ModelOutcome:
    """A model's (or seed's) night. state: success, warn (passed with warnings),
    failed, skipped (dbt skipped it), not_run (not in the build), no_results."""

    name: str
    state: str
    reason: str = ""
    node: NodeResult | None = None
    tests: list[NodeResult] = field(default_factory=list)
    elapsed: float | None = None  # of the whole dbt build


def _node_result(raw: dict, nodes: dict) -> NodeResult:
    info = nodes.get(raw["unique_id"], {})
    uid = raw["unique_id"]
    return NodeResult(
        unique_id=uid,
        name=info.get("name") or uid.rsplit(".", 1)[-1],
        resource_type=info.get("resource_type") or uid.split(".", 1)[0],
        status=str(raw.get("status")),
        seconds=float(raw.get("execution_time") or 0.0),
        message=(raw.get("message") or "").strip(),
        adapter_response=raw.get("adapter_response") or {},
        failures=raw.get("failures"),
    )


class NightResults:
    """One build's results (run_results.json and nodes.json of its folder)."""

    def __init__(self, where: Path):
        self.where = where
        raw = json.loads((where / RUN_RESULTS).read_text(encoding="utf-8"))
        self.nodes: dict[str, dict] = json.loads((where / NODES).read_text(encoding="utf-8"))
        self.elapsed = raw.get("elapsed_time")
        self.generated_at = (raw.get("metadata") or {}).get("generated_at")
        self.results = {r["unique_id"]: _node_result(r, self.nodes) for r in raw.get("results") or []}
        self.by_name = {
            r.name: r for r in self.results.values() if r.resource_type in OWNERS
        }  # model and seed names are unique in a dbt project
        self.tests_of: dict[str, list[NodeResult]] = {}
        for r in self.results.values():
            if r.resource_type in TESTS:
                for owner in self._owners(r.unique_id):
                    self.tests_of.setdefault(owner, []).append(r)

    def _owners(self, unique_id: str) -> list[str]:
        info = self.nodes.get(unique_id, {})
        if info.get("attached_node"):
            return [info["attached_node"]]
        return [n for n in info.get("depends_on", []) if n.split(".", 1)[0] in OWNERS]

    def _failed_itself(self, unique_id: str) -> list[NodeResult]:
        """The node's own failure or its failing tests (either makes dbt skip what reads it)."""
        own = self.results.get(unique_id)
        return ([own] if own and own.failed else []) + [t for t in self.tests_of.get(unique_id, []) if t.failed]

    def upstream_failures(self, unique_id: str) -> dict[str, list[NodeResult]]:
        """The failed models and seeds this node reads, directly or not, with what failed.
        Only the nearest: what reads a failed node was skipped, not failed."""
        found: dict[str, list[NodeResult]] = {}
        seen = {unique_id}
        queue = deque(self.nodes.get(unique_id, {}).get("depends_on", []))
        while queue:
            uid = queue.popleft()
            if uid in seen:
                continue
            seen.add(uid)
            failed = self._failed_itself(uid)
            if failed:
                found[uid] = failed
            else:
                queue.extend(self.nodes.get(uid, {}).get("depends_on", []))
        return found

    def outcome(self, name: str) -> ModelOutcome:
        node = self.by_name.get(name)
        if node is None:
            return ModelOutcome(
                name,
                "not_run",
                f"{name} was not part of this run's dbt build ({self.where / RUN_RESULTS})",
                elapsed=self.elapsed,
            )
        tests = sorted(self.tests_of.get(node.unique_id, []), key=lambda t: (t.resource_type, t.name))
        out = ModelOutcome(name, "success", node=node, tests=tests, elapsed=self.elapsed)
        failed_tests = [t for t in tests if t.failed]
        if node.failed or failed_tests:
            out.state, out.reason = "failed", _failure(node, failed_tests)
        elif node.status == "skipped":
            out.state = "skipped"
            upstream = self.upstream_failures(node.unique_id)
            because = "; ".join(
                _failure(self.results[uid], [t for t in failed if t.unique_id != uid])
                for uid, failed in upstream.items()
            )
            out.reason = f"dbt skipped {node.label}: " + (
                f"what it reads failed: {because}" if because else "an earlier node failed (see the dbt_build log)"
            )
        else:
            warnings = [t.verdict() for t in tests if t.status == "warn"]
            if node.status not in ("success", "no-op"):  # dbt's partial success of a microbatch model
                warnings.insert(0, node.verdict())
            if warnings:
                out.state, out.reason = "warn", "; ".join(warnings)
        return out


def _failure(node: NodeResult, failed_tests: list[NodeResult]) -> str:
    tests = "; ".join(t.verdict() for t in failed_tests)
    if node.failed:
        return node.verdict() + (f"; {tests}" if tests else "")
    return f"{node.label} built, but {tests}"


def outcome(where: Path | None, name: str) -> ModelOutcome:
    """The night of model (or seed) `name` from the results kept in `where`."""
    if where is None or not (where / RUN_RESULTS).exists():
        return ModelOutcome(
            name,
            "no_results",
            "the dbt build left no results for this run"
            + (f" ({where / RUN_RESULTS} does not exist)" if where is not None else "")
            + ": it did not run, or stopped before dbt ran a node",
        )
    return NightResults(where).outcome(name)
