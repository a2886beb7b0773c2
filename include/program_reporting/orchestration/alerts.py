"""Operators' alerts about nightly runs, through Airflow's notifiers.

- A nightly run that publishes nothing raises one alert, however often Airflow
  delivers its failure callback.
- The first run that publishes after one or more failed runs sends one
  recovery notice naming them; the runs after it send nothing.

Every alert goes to the alerts log and the webhook (publishing.notify) and,
when e-mail is configured, through the SMTP provider's `SmtpNotifier`.

Settings (environment variables):

- `PROGRAM_REPORTING_ALERT_EMAILS`: comma-separated recipients (unset: no e-mail).
- `PROGRAM_REPORTING_ALERT_FROM`: sender (default `program-reporting@<host name>`).
- `PROGRAM_REPORTING_SMTP_HOST`, `PROGRAM_REPORTING_SMTP_PORT` (default 25),
  `PROGRAM_REPORTING_SMTP_USER`, `PROGRAM_REPORTING_SMTP_PASSWORD`,
  `PROGRAM_REPORTING_SMTP_TLS` (`starttls`, `ssl` or `none`, the default):
  the mail server. They become the Airflow connection `program_reporting_smtp`
  (airflow_env), which SmtpNotifier reads; an operator may define that
  connection in Airflow instead.

What has been alerted is kept in `$PROGRAM_REPORTING_HOME/alerts_state.json`
(per DAG: the runs alerted, and the failed runs not yet followed by a
publication), so the decision survives the processes Airflow runs callbacks in.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

from program_reporting.core.settings import paths
from program_reporting.orchestration.airflow_env import ALERT_EMAILS_ENV, SMTP_CONN_ID, alert_sender
from program_reporting.orchestration.business_date import business_date, calendar_of_dag
from program_reporting.orchestration.nightly import dag_id_of

log = logging.getLogger(__name__)

# enough to recognise a callback delivered again, not a history (alerts.log is the history)
REMEMBERED_RUNS = 200


def recipients() -> list[str]:
    return [a.strip() for a in os.environ.get(ALERT_EMAILS_ENV, "").split(",") if a.strip()]


@contextlib.contextmanager
def _state(dag_id: str) -> Iterator[dict]:
    """This DAG's alert state, read and written under a lock."""
    path = paths().home / "alerts_state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            everything = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except (OSError, json.JSONDecodeError):
            log.warning("alert state %s unreadable: starting afresh", path, exc_info=True)
            everything = {}
        mine = everything.setdefault(dag_id, {"alerted": [], "failing": []})
        yield mine
        mine["alerted"] = mine["alerted"][-REMEMBERED_RUNS:]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(everything, indent=1), encoding="utf-8")
        os.replace(tmp, path)


def _latest_report(ds: str | None) -> Path | None:
    from program_reporting.reporting.report import latest_report

    return latest_report(ds or "", "report.html")


class NightlyRunNotifier(BaseNotifier):
    """The nightly DAG's failure callback (`NightlyRunNotifier("failed")`) and
    success callback (`NightlyRunNotifier("published")`)."""

    def __init__(self, outcome: str):
        if outcome not in ("failed", "published"):
            raise ValueError(f"outcome {outcome!r}: expected failed or published")
        super().__init__()
        self.outcome = outcome

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (no template fields); and the DAG in the context of
        `airflow dags test` is a SerializedDAG, which has no template environment."""

    def notify(self, context: Any) -> None:
        dag_run = context.get("dag_run")
        dag_id = dag_id_of(context)
        run_id = getattr(dag_run, "run_id", None) or context.get("run_id")
        logical = context.get("logical_date")
        ds = business_date(logical, calendar_of_dag(dag_id).time_zone) if logical else None
        with _state(dag_id) as state:
            if self.outcome == "failed":
                if run_id in state["alerted"]:
                    log.info("run %s of %s was alerted already: no second alert", run_id, dag_id)
                    return
                state["alerted"].append(run_id)
                state["failing"].append({"run_id": run_id, "ds": ds})
                alert = self._failure(context, dag_id, run_id, ds)
            else:
                failed, state["failing"] = state["failing"], []
                if not failed:
                    return
                alert = self._recovery(dag_id, run_id, ds, failed)
        send(context, **alert)

    @staticmethod
    def _failure(context: Any, dag_id: str, run_id: str, ds: str | None) -> dict:
        ti = context.get("ti")
        failed_task = getattr(ti, "task_id", None)
        reason = context.get("reason")
        message = (
            f"nightly run for ds={ds} published nothing"
            + (f" (last failed task: {failed_task})" if failed_task else "")
            + (f": {reason}" if reason else "")
        )
        return {
            "event": "nightly_run_failed",
            "subject": f"[program-reporting] NOT PUBLISHED ds={ds} ({dag_id})",
            "message": message,
            "report_path": _latest_report(ds),
            "details": {"ds": ds, "airflow_run_id": run_id},
        }

    @staticmethod
    def _recovery(dag_id: str, run_id: str, ds: str | None, failed: list[dict]) -> dict:
        since = ", ".join(f"ds={f['ds']} ({f['run_id']})" for f in failed)
        return {
            "event": "nightly_run_recovered",
            "subject": f"[program-reporting] recovered: ds={ds} published ({dag_id})",
            "message": f"nightly run for ds={ds} published, after {len(failed)} failed run(s): {since}",
            "report_path": _latest_report(ds),
            "details": {"ds": ds, "airflow_run_id": run_id, "recovered_runs": [f["run_id"] for f in failed]},
        }


def send(context: Any, event: str, subject: str, message: str, report_path, details: dict) -> dict:
    """One alert to every channel: the alerts log and the webhook (publishing.notify), and
    e-mail through the SMTP provider's SmtpNotifier when recipients are set. Returns the
    alerts log's record."""
    from program_reporting.publishing import notify

    record = notify.notify(event, message, report_path, **details)
    to = recipients()
    if not to:
        return record
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    from markupsafe import escape

    body = f"<p>{escape(record['message'])}</p>"
    if report_path:
        body += f"<p>Report: {escape(str(report_path))}</p>"
    # notify(), not the notifier's __call__: the text is sent as it is, not rendered as a template
    try:
        SmtpNotifier(
            to=to,
            from_email=alert_sender(dict(os.environ)),
            subject=subject,
            html_content=body,
            smtp_conn_id=SMTP_CONN_ID,
        ).notify(context)
    except Exception:
        # an unreachable mail server must not turn an alert into a second failure
        log.exception("could not e-mail the alert %s to %s", event, ", ".join(to))
    return record
