"""The nightly schedules in business terms, without importing Airflow.

Each program reports in its own calendar: programs.csv (the dbt seed) gives
its time zone. Programs that share a time zone share a night: one nightly DAG
per time zone (a *calendar*), generated from the seed, runs at 02:00 local
time (a CronTriggerTimetable) and processes the business date that has just
ended there. The calendar of Asia/Shanghai, the bundled programs' default,
keeps the DAG id the interface names, `program_reporting_nightly`; another
time zone's DAG is `program_reporting_nightly__<zone>`, e.g.
`program_reporting_nightly__america_new_york` for PPP-2020.

The run whose logical date is 2020-06-04 02:00+08:00 processes ds=2020-06-03.
One Airflow run per ds and calendar; `logical_date_for(ds, zone)` is the
inverse, which `program-reporting run` uses so that a manual run of a date
takes exactly the path of the scheduled one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from program_reporting.core.settings import parse_ds

NIGHTLY_DAG_ID = "program_reporting_nightly"
PROGRAM_TIME_ZONE = "Asia/Shanghai"  # the default calendar (extracts.md)
RUN_AT_LOCAL = dt.time(2, 0)
SCHEDULE_CRON = f"{RUN_AT_LOCAL.minute} {RUN_AT_LOCAL.hour} * * *"
# A program's figures for a date are due by this local time the next morning (the deadline alert).
DUE_AT_LOCAL = dt.time(6, 0)
NIGHT_TIMEOUT = dt.timedelta(hours=12)  # the nightly DAG's dagrun_timeout


@dataclass(frozen=True)
class Calendar:
    """A time zone and the programs that report in it: one nightly DAG."""

    time_zone: str
    programs: tuple[str, ...]

    @property
    def dag_id(self) -> str:
        if self.time_zone == PROGRAM_TIME_ZONE:
            return NIGHTLY_DAG_ID
        return f"{NIGHTLY_DAG_ID}__{re.sub(r'[^a-z0-9]+', '_', self.time_zone.lower()).strip('_')}"

    def due(self, ds: str) -> dt.datetime:
        """When the figures for `ds` are due (UTC): DUE_AT_LOCAL on the next local day."""
        day = parse_ds(ds) + dt.timedelta(days=1)
        return dt.datetime.combine(day, DUE_AT_LOCAL, tzinfo=ZoneInfo(self.time_zone)).astimezone(dt.UTC)

    def latest_night(self, now: dt.datetime | None = None) -> str:
        """The ds of the calendar's most recent scheduled night (RUN_AT_LOCAL today, or
        yesterday before that time): the night the scheduler runs first when unpaused."""
        local = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(self.time_zone))
        run_day = local.date() if local.time() >= RUN_AT_LOCAL else local.date() - dt.timedelta(days=1)
        return (run_day - dt.timedelta(days=1)).isoformat()


def calendars() -> list[Calendar]:
    """One calendar per time zone of programs.csv; the default one always, first."""
    from program_reporting.core import reference

    zones: dict[str, list[str]] = {PROGRAM_TIME_ZONE: []}
    for code, program in sorted(reference.programs().items()):
        zones.setdefault(program.time_zone, []).append(code)
    return [Calendar(zone, tuple(codes)) for zone, codes in zones.items()]


def calendar_of_dag(dag_id: str | None) -> Calendar:
    for calendar in calendars():
        if calendar.dag_id == dag_id:
            return calendar
    return calendars()[0]  # any other DAG (tests, a renamed copy) keeps the default calendar


def calendar_of_program(program_code: str) -> Calendar:
    for calendar in calendars():
        if program_code in calendar.programs:
            return calendar
    known = ", ".join(sorted(c for cal in calendars() for c in cal.programs))
    raise ValueError(f"unknown program {program_code!r}; programs.csv has {known}")


def business_date(logical_date: dt.datetime, time_zone: str = PROGRAM_TIME_ZONE) -> str:
    """The ds a run processes: the local calendar day before its logical date."""
    local = logical_date.astimezone(ZoneInfo(time_zone))
    return (local.date() - dt.timedelta(days=1)).isoformat()


def logical_date_for(ds: str, time_zone: str = PROGRAM_TIME_ZONE) -> dt.datetime:
    """The logical date (UTC) of the scheduled run that processes `ds`."""
    day = parse_ds(ds) + dt.timedelta(days=1)
    local = dt.datetime.combine(day, RUN_AT_LOCAL, tzinfo=ZoneInfo(time_zone))
    return local.astimezone(dt.UTC)


def new_run_id(ds: str, now: dt.datetime | None = None) -> str:
    """The pipeline's run id: the business date and the UTC start of the attempt.

    Unique per run, so that every published set and report is kept, and it
    sorts chronologically within a ds. Safe in a path (no ':' or '+')."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{ds}_{now.astimezone(dt.UTC):%Y%m%dT%H%M%S}Z"
