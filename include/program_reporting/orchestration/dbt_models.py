"""The nightly DAG's per-model status tasks: the TaskGroup `dbt`, one task per
dbt model, each showing in the Airflow UI how its model did in the night's
one `dbt build` (the `dbt_build` task), from that build's results.

They run no dbt and hold no lock: each reads the results the build kept for
its run (warehouse/dbt_results.py) and ends as its model did:

- success: the model built and none of its tests failed (warnings are logged);
- failed (AirflowFailException): the model or one of its tests errored or
  failed, named with dbt's message;
- skipped (AirflowSkipException): dbt skipped the model (what it reads
  failed: named), it was not part of the night's build, or the build left no
  results (it did not run, or stopped before dbt ran a node).

Each task's log gives the model's dbt execution time, the adapter's
response (rows affected where dbt-duckdb reports them) and every test's
status and time. The tasks never decide the night: they are upstream of
nothing the run's outcome depends on (docs/orchestration.md).

The task list is made while the DAG file is parsed, so it costs no dbt: the
.sql files under dbt_project/models/ (the folder below it is the model's
layer, a TaskGroup of its own). A model dbt does not know (a file disabled
in its YAML) only ever shows as not run.

Models only, not the seeds: under `program-reporting run` every task costs
Airflow's own ~0.1 s, and the budget is a tenth of the build's time
(docs/orchestration.md). A seed's failure still shows: dbt_build names it,
and every model reading the seed is skipped naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from program_reporting.core.settings import DBT_PROJECT_DIR

log = logging.getLogger(__name__)

PLAN_TASK = "plan"  # its run id names the folder of the build's results
GROUP = "dbt"
LAYER_ORDER = ("staging", "intermediate", "marts")  # dbt's build order, for the grid


def models(project: Path = DBT_PROJECT_DIR) -> dict[str, list[str]]:
    """Layer -> the dbt models in it, read from the project's files only."""
    by_layer: dict[str, list[str]] = {}
    root = project / "models"
    for sql in sorted(root.rglob("*.sql")):
        parts = sql.relative_to(root).parts
        by_layer.setdefault(parts[0] if len(parts) > 1 else "models", []).append(sql.stem)
    rank = {layer: i for i, layer in enumerate(LAYER_ORDER)}
    return dict(sorted(by_layer.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def status(name: str, context: Any) -> None:
    """The task of model `name`: its night, from the results dbt_build kept.

    The folder is found from the plan's run id, not from dbt_build's XCom: a
    failed build returns nothing, and the XCom of a dbt_build that did not run
    in this attempt of the Airflow run (an upstream step failed this time) is
    the last attempt's. A run id is new with each plan, so a night whose build
    did not run finds no results. Within one plan, the latest build's results
    show (a cleared dbt_build forgets the last ones when it starts)."""
    from program_reporting.core import failpoints
    from program_reporting.core.settings import paths
    from program_reporting.warehouse import dbt_results

    run = context["ti"].xcom_pull(task_ids=PLAN_TASK)
    failpoints.hit("dbt_models.read")  # results that cannot be read (the e2e test: the night still stands)
    settle(name, dbt_results.folder(paths().tmp, run["run_id"]) if run else None)


def settle(name: str, where: Path | None) -> None:
    """Log the night of model `name` from the build results in `where`, and
    raise what gives its task the model's state (returning: success).

    One log record and no return value (no XCom): under `program-reporting run`
    each task's every call into Airflow is paid once per model."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from program_reporting.warehouse import dbt_results

    out = dbt_results.outcome(where, name)
    (log.warning if out.state == "warn" else log.info)("%s", "\n".join(report_lines(out)))
    if out.state in ("no_results", "not_run", "skipped"):
        raise AirflowSkipException(out.reason)
    if out.state == "failed":
        raise AirflowFailException(f"dbt: {out.reason}")


def report_lines(out) -> list[str]:
    """What the task log says: the model's result, then each of its tests."""
    node = out.node
    if node is None:
        return [out.reason]
    adapter = node.adapter_response or {}
    response = adapter.get("_message") or "no response"
    if adapter.get("rows_affected") is not None:
        response += f", rows affected: {adapter['rows_affected']}"
    lines = [
        f"{node.label}: {node.status} in {node.seconds:.2f} s (adapter: {response})"
        + (f"; dbt build of the night: {out.elapsed:.1f} s" if out.elapsed is not None else ""),
    ]
    if node.message and node.status not in ("success", "skipped"):
        lines.append(f"dbt: {node.message}")
    if out.tests:
        counts: dict[str, int] = {}
        for t in out.tests:
            counts[t.status] = counts.get(t.status, 0) + 1
        lines.append(
            f"{len(out.tests)} tests ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}), "
            f"{sum(t.seconds for t in out.tests):.2f} s:"
        )
        lines += ["  " + t.describe() for t in out.tests]
    else:
        lines.append("no tests")
    if out.reason and out.state != "warn":  # a warning is in its test's line already
        lines.append(out.reason)
    return lines
