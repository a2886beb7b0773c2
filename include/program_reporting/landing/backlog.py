"""Land a backlog of business dates: `program-reporting land --from D1 --to D2`.

What a program office does once when a program joins, or after an outage:
the deliveries of many dates are in the drop folder and must land in order
before one warehouse build. Each date lands the way the nightly DAG lands a
night: the three sources' deliveries in parallel (one process each, as the
DAG's three land tasks), then the release of held orphans, then the next
date. Dates stay in order because each is checked against the ones before.

Each source has one process for the whole backlog. Those of the sources
with orphans (credit events, employment reports) keep their lock and their
landing index open from their first landing to the end (landing.Kept), and
run their half of each date's release: DuckDB reads a source's index once
per backlog instead of once per date, and the two halves of a release run
in parallel. The next date's landings are queued as soon as a date's
landings are in: the merchants one runs beside the release (which counts
only merchants of dates up to its own), the others after it in their
process. The outcome is the date-by-date one.

The first date with a missing or rejected delivery stops the backlog once
that date's other sources have landed, without releasing orphans for it (as
the DAG does not): the error names the delivery, and landing the range
again from that date carries on.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from program_reporting.core import settings
from program_reporting.core.settings import Paths
from program_reporting.landing import land as landing

log = logging.getLogger(__name__)


def _init_worker(drop: str, home: str, level: int) -> None:
    os.environ["PROGRAM_REPORTING_DROP"] = drop
    os.environ["PROGRAM_REPORTING_HOME"] = home
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


_KEPT: dict[str, landing.Kept] = {}  # in a worker: its source's lock and index, once it has landed


def _kept(source: str) -> landing.Kept | None:
    if source not in landing.ORPHAN_SOURCES:
        return None  # the merchants lock is taken by the others' lookups: never held across dates
    if source not in _KEPT:
        _KEPT[source] = landing.Kept(source, settings.paths())
        atexit.register(_KEPT[source].close)
    return _KEPT[source]


def _land_one(source: str, ds: str) -> tuple[str, dict]:
    """land() in the source's worker process. Outcomes travel back as plain
    data: the landing exceptions do not pickle."""
    try:
        return "landed", landing.land(source, ds, kept=_kept(source))
    except landing.DeliveryNotReady as exc:
        return "not_ready", {"message": str(exc)}
    except landing.DeliveryRejected as exc:
        return "rejected", {
            "source": exc.source,
            "ds": exc.ds,
            "file": exc.file,
            "cause": exc.cause,
            "detail": exc.detail,
        }


def _release_one(source: str, ds: str) -> dict:
    return landing.release_kept(_kept(source), ds)


def land_days(dates: list[str], paths: Paths | None = None) -> list[dict]:
    """Land every source's delivery of each date in `dates`, in order, then
    release held orphans. Returns, per date, {"ds", "seconds", "delivered",
    <source>: its reconciliation record, "release": release_orphans' summary}.
    Raises DeliveryNotReady or DeliveryRejected for the first date that
    cannot land whole (the dates before it have landed)."""
    paths = paths or settings.paths()
    for ds in dates:
        settings.parse_ds(ds)
    out: list[dict] = []
    started = time.monotonic()
    delivered = 0
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold DuckDB threads
    with contextlib.ExitStack() as stack:
        # leaving shuts each pool down: its process ends, and with it the lock and index it kept
        pools = {
            source: stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=context,
                    initializer=_init_worker,
                    initargs=(str(paths.drop), str(paths.home), logging.getLogger().level),
                )
            )
            for source in settings.SOURCES
        }
        queued: dict = {}  # the next date's landings, queued behind this date's release
        for i, ds in enumerate(dates, start=1):
            t0 = time.monotonic()
            futures = queued or {source: pools[source].submit(_land_one, source, ds) for source in settings.SOURCES}
            day: dict = {"ds": ds}
            for source, future in futures.items():
                kind, value = future.result()
                if kind == "not_ready":
                    raise landing.DeliveryNotReady(value["message"])
                if kind == "rejected":
                    raise landing.DeliveryRejected(**value)
                day[source] = value
            releases = {source: pools[source].submit(_release_one, source, ds) for source in landing.ORPHAN_SOURCES}
            following = dates[i] if i < len(dates) else None
            queued = (
                {source: pools[source].submit(_land_one, source, following) for source in settings.SOURCES}
                if following
                else {}
            )
            day["release"] = landing.release_summary(
                {"ds": ds, "touches_from": None, **{source: f.result() for source, f in releases.items()}}
            )
            day["delivered"] = sum(day[s]["delivered"] for s in settings.SOURCES)
            day["seconds"] = time.monotonic() - t0
            delivered += day["delivered"]
            out.append(day)
            elapsed = time.monotonic() - started
            log.info(
                "landed %s (%d of %d): %d rows in %.1fs; backlog so far %d rows in %.0fs (%.0f rows/s)",
                ds,
                i,
                len(dates),
                day["delivered"],
                day["seconds"],
                delivered,
                elapsed,
                delivered / max(elapsed, 1e-9),
            )
    return out
