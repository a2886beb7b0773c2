"""The nightly schedule in business terms, without importing Airflow.

The program office's calendar is Asia/Shanghai. The nightly DAG runs at
02:00 local time (a CronTriggerTimetable) and processes the business date
that has just ended: the run whose logical date is 2020-06-04 02:00+08:00
processes ds=2020-06-03. One Airflow run per ds; `logical_date_for(ds)` is
the inverse, which `program-reporting run` uses so that a manual run of a
date takes exactly the path of the scheduled one.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from program_reporting.core.settings import parse_ds

PROGRAM_TIME_ZONE = "Asia/Shanghai"
RUN_AT_LOCAL = dt.time(2, 0)
SCHEDULE_CRON = f"{RUN_AT_LOCAL.minute} {RUN_AT_LOCAL.hour} * * *"


def business_date(logical_date: dt.datetime) -> str:
    """The ds a run processes: the local calendar day before its logical date."""
    local = logical_date.astimezone(ZoneInfo(PROGRAM_TIME_ZONE))
    return (local.date() - dt.timedelta(days=1)).isoformat()


def logical_date_for(ds: str) -> dt.datetime:
    """The logical date (UTC) of the scheduled run that processes `ds`."""
    day = parse_ds(ds) + dt.timedelta(days=1)
    local = dt.datetime.combine(day, RUN_AT_LOCAL, tzinfo=ZoneInfo(PROGRAM_TIME_ZONE))
    return local.astimezone(dt.UTC)


def new_run_id(ds: str, now: dt.datetime | None = None) -> str:
    """The pipeline's run id: the business date and the UTC start of the attempt.

    Unique per run, so that every published set and report is kept, and it
    sorts chronologically within a ds. Safe in a path (no ':' or '+')."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{ds}_{now.astimezone(dt.UTC):%Y%m%dT%H%M%S}Z"
