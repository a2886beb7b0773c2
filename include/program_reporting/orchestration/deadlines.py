"""The figures' deadline: a program's figures for a business date are due by
06:00 program-local time the next morning (business_date.DUE_AT_LOCAL).

Each nightly DAG carries an Airflow Deadline Alert: 4 hours after its run's
logical date (02:00 local), unless the run has succeeded, the scheduler
queues `figures_late` and the triggerer runs it. It raises one alert
(`figures_late`: alerts log, webhook, e-mail when configured) naming the
programs, the business date and what is missing or failed: the deliveries
not in the drop yet, or the withheld run's reason, or that the run has not published.

Nothing is alerted when nothing was late: the figures were published by the
due time (a run that succeeds also removes its deadline), or after the night
could have ended (NIGHT_TIMEOUT after its logical date): then another run
published them, e.g. a past date run by hand, whose runs carry the old date.

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
from program_reporting.orchestration.business_date import NIGHT_TIMEOUT, business_date

log = logging.getLogger(__name__)

ALERT_AFTER_LOGICAL_DATE = dt.timedelta(hours=4)  # 02:00 local + 4 h = 06:00 local (DUE_AT_LOCAL)


def what_is_late(ds: str, due: dt.datetime, night_ended: dt.datetime) -> str | None:
    """What stands between `ds` and its publication, as an operator reads it; None when
    nothing was late: the figures were published by `due`, or after `night_ended` (the
    night's run cannot last longer, so another run published them: a past date run by
    hand, e.g. `program-reporting run`, whose runs carry the old date)."""
    from program_reporting.reporting.report import latest_report

    p = paths()
    report = latest_report(ds)
    latest = None
    if report:
        try:
            latest = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            latest = None
    if latest and latest.get("decision") == "published":
        written = dt.datetime.fromisoformat(latest["written_at"]) if latest.get("written_at") else None
        if written and (written <= due or written > night_ended):
            return None
        return f"published late, at {latest.get('written_at')} by run {latest.get('run_id')}"
    parts = []
    missing = [s for s in SOURCES if not (p.delivery_dir(s, ds) / CONTROL_FILE).exists()]
    if missing:
        parts.append(
            "missing deliveries: " + ", ".join(f"{s} ({p.delivery_dir(s, ds) / CONTROL_FILE})" for s in missing)
        )
    if latest:
        parts.append(f"run {latest.get('run_id')} withheld the figures: {latest.get('reason')}")
    return "; ".join(parts) or "every delivery is in the drop; the run has not published yet"


def _instant(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def _alert(context: dict, programs: list[str], time_zone: str) -> dict | None:
    from program_reporting.orchestration.alerts import send

    dag_run = context.get("dag_run") or {}
    if dag_run.get("run_type") == "backfill":
        log.info("deadline of backfill run %s passed: not alerted", dag_run.get("dag_run_id"))
        return None
    run_id = dag_run.get("dag_run_id") or dag_run.get("run_id")
    logical = _instant(dag_run["logical_date"])
    ds = business_date(logical, time_zone)
    due = (logical + ALERT_AFTER_LOGICAL_DATE).astimezone(dt.UTC)
    late = what_is_late(ds, due, logical + NIGHT_TIMEOUT)
    if late is None:
        log.info("deadline of run %s (ds=%s) passed, but nothing was late: not alerted", run_id, ds)
        return None
    names = ", ".join(programs) or "(no program in this calendar)"
    return send(
        context,
        event="figures_late",
        subject=f"[program-reporting] LATE: {names} ds={ds} not published by its deadline",
        message=f"figures of {names} for ds={ds} not published by {due.isoformat()} (06:00 {time_zone}): {late}",
        report_path=None,
        details={"ds": ds, "programs": programs, "due": due.isoformat(), "airflow_run_id": run_id},
    )


async def figures_late(context: dict, programs: list[str], time_zone: str) -> None:
    """The Deadline Alert's callback (run by the triggerer)."""
    await asyncio.to_thread(_alert, context, programs, time_zone)


def deadline_kwargs(programs: tuple[str, ...], time_zone: str) -> dict[str, Any]:
    return {"programs": list(programs), "time_zone": time_zone}
