"""The alerting hook: a withheld publication or a failed run is logged, appended
to $PROGRAM_REPORTING_HOME/alerts.log (JSON lines) and, when
PROGRAM_REPORTING_WEBHOOK_URL is set, POSTed there as JSON.

A webhook that is down must never turn an alert into a second failure:
delivery errors are logged, not raised.

Settings:
  PROGRAM_REPORTING_WEBHOOK_URL      http(s) URL to POST alerts to (unset: none)
  PROGRAM_REPORTING_WEBHOOK_TIMEOUT  seconds to wait for it (default 5)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from program_reporting.core.redaction import scrub
from program_reporting.core.settings import Paths
from program_reporting.core.settings import paths as default_paths

log = logging.getLogger(__name__)


def alerts_log(p: Paths) -> Path:
    return p.home / "alerts.log"


def _timeout() -> float:
    raw = os.environ.get("PROGRAM_REPORTING_WEBHOOK_TIMEOUT", "")
    try:
        return float(raw) if raw else 5.0
    except ValueError:
        log.warning("PROGRAM_REPORTING_WEBHOOK_TIMEOUT=%r is not a number; using 5 s", raw)
        return 5.0


def _post(url: str, payload: dict) -> bool:
    data = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "program-reporting-notify"},
    )
    try:
        with urllib.request.urlopen(request, timeout=_timeout()) as response:  # noqa: S310 - operator's URL
            ok = 200 <= response.status < 300
            if not ok:
                log.error("alert webhook answered HTTP %s", response.status)
            return ok
    except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
        log.error("alert webhook %s failed: %s", url.split("?")[0], exc)
        return False


def notify(event: str, message: str, report_path: Path | None = None, paths: Paths | None = None, **details) -> dict:
    """Raise an alert. Returns the record written (with `webhook`: delivered or not)."""
    p = paths or default_paths()
    record = scrub(
        {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "event": event,
            "message": message,
            "report_path": str(report_path) if report_path else None,
            "host": socket.gethostname(),
            **details,
        }
    )
    log.error("ALERT %s: %s%s", event, record["message"], f" (report: {report_path})" if report_path else "")
    url = os.environ.get("PROGRAM_REPORTING_WEBHOOK_URL", "").strip()
    record["webhook"] = _post(url, {k: v for k, v in record.items() if k != "webhook"}) if url else None
    try:
        target = alerts_log(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps(record, default=str) + "\n")
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError as exc:
        log.error("could not append the alert to %s: %s", alerts_log(p), exc)
    return record
