"""The figures' deadline: a program's figures for a business date are due by
06:00 program-local time the next morning (business_date.DUE_AT_LOCAL).

Each nightly DAG carries an Airflow Deadline Alert: 4 hours after its run's
logical date (02:00 local), unless the run has succeeded, the scheduler
queues `figures_late` and the triggerer runs it. It raises one alert
(`figures_late`: alerts log, webhook, e-mail when configured) naming the
programs, the business date and what is missing or failed: the deliveries
not in the drop yet, or the withheld run's reason, or the step still running.

A backfill's runs are dated in the past, so their deadlines have always
passed: they are not alerted (their outcome is the backfill's to report).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import Any

from program_reporting.core.contract import CONTROL_FILE
from program_reporting.core.settings import SOURCES, paths
from program_reporting.orchestration.business_date import business_date

log = logging.getLogger(__name__)

ALERT_AFTER_LOGICAL_DATE = dt.timedelta(hours=4)  # 02:00 local + 4 h = 06:00 local (DUE_AT_LOCAL)


def what_is_late(ds: str) -> str:
    """What stands between `ds` and its publication, as an operator reads it."""
    p = paths()
    missing = [s for s in SOURCES if not (p.delivery_dir(s, ds) / CONTROL_FILE).exists()]
    reports = sorted(p.reports.glob(f"{ds}_*/report.json")) if p.reports.exists() else []
    latest = None
    if reports:
        try:
            latest = json.loads(reports[-1].read_text(encoding="utf-8"))
        except (OSError, ValueError):
            latest = None
    if latest and latest.get("decision") == "published":
        return f"published late, by run {latest.get('run_id')}"
    parts = []
    if missing:
        parts.append(
            "missing deliveries: " + ", ".join(f"{s} ({p.delivery_dir(s, ds) / CONTROL_FILE})" for s in missing)
        )
    if latest:
        parts.append(f"run {latest.get('run_id')} withheld the figures: {latest.get('reason')}")
    return "; ".join(parts) or "every delivery is in the drop; the run has not published yet"


def _alert(context: dict, programs: list[str], time_zone: str) -> dict | None:
    from program_reporting.orchestration.alerts import send

    dag_run = context.get("dag_run") or {}
    if dag_run.get("run_type") == "backfill":
        log.info("deadline of backfill run %s passed: not alerted", dag_run.get("run_id"))
        return None
    logical = dt.datetime.fromisoformat(str(dag_run["logical_date"]).replace("Z", "+00:00"))
    ds = business_date(logical, time_zone)
    due = (logical + ALERT_AFTER_LOGICAL_DATE).astimezone(dt.UTC)
    late = what_is_late(ds)
    names = ", ".join(programs) or "(no program in this calendar)"
    return send(
        context,
        event="figures_late",
        subject=f"[program-reporting] LATE: {names} ds={ds} not published by its deadline",
        message=f"figures of {names} for ds={ds} not published by {due.isoformat()} (06:00 {time_zone}): {late}",
        report_path=None,
        details={"ds": ds, "programs": programs, "due": due.isoformat(), "airflow_run_id": dag_run.get("run_id")},
    )


async def figures_late(context: dict, programs: list[str], time_zone: str) -> None:
    """The Deadline Alert's callback (run by the triggerer)."""
    await asyncio.to_thread(_alert, context, programs, time_zone)


def deadline_kwargs(programs: tuple[str, ...], time_zone: str) -> dict[str, Any]:
    return {"programs": list(programs), "time_zone": time_zone}
