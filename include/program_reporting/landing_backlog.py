"""Land a backlog of business dates: `program-reporting land --from D1 --to D2`.

What a program office does once when a program joins, or after an outage:
the deliveries of many dates are in the drop folder and must land in order
before one warehouse build. Each date lands the way the nightly DAG lands a
night: the three sources' deliveries in parallel (one process each, as the
DAG's three land tasks), then the release of held orphans, then the next
date. Dates stay in order because each is checked against the ones before.
One overlap the DAG does not have: the next date's landings start while the
release runs. Those of the sources it releases into start as soon as it
holds their locks: they read and check their delivery on its own, and take
their lock, which the release holds until it is done, after it. The
merchants landing starts once the release has read the merchants it needs
(before, it would only hold the merchants lock that the release waits for).
The outcome is the same: the release counts only merchants of dates up to
its own.

The first date with a missing or rejected delivery stops the backlog once
that date's other sources have landed, without releasing orphans for it (as
the DAG does not): the error names the delivery, and landing the range
again from that date carries on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from . import landing, settings
from .settings import Paths

log = logging.getLogger(__name__)


def _init_worker(drop: str, home: str, level: int) -> None:
    os.environ["PROGRAM_REPORTING_DROP"] = drop
    os.environ["PROGRAM_REPORTING_HOME"] = home
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _land_one(source: str, ds: str) -> tuple[str, dict]:
    """land() in a worker process. Outcomes travel back as plain data: the
    landing exceptions do not pickle."""
    try:
        return "landed", landing.land(source, ds)
    except landing.DeliveryNotReady as exc:
        return "not_ready", {"message": str(exc)}
    except landing.DeliveryRejected as exc:
        return "rejected", {"source": exc.source, "ds": exc.ds, "file": exc.file, "cause": exc.cause,
                            "detail": exc.detail}


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
    with ProcessPoolExecutor(max_workers=len(settings.SOURCES), mp_context=context, initializer=_init_worker,
                             initargs=(str(paths.drop), str(paths.home), logging.getLogger().level)) as pool:
        started_next: dict = {}  # the next date's landings, started during a release
        for i, ds in enumerate(dates, start=1):
            t0 = time.monotonic()
            futures = {source: started_next.get(source) or pool.submit(_land_one, source, ds)
                       for source in settings.SOURCES}
            started_next = {}
            day: dict = {"ds": ds}
            for source, future in futures.items():
                kind, value = future.result()
                if kind == "not_ready":
                    raise landing.DeliveryNotReady(value["message"])
                if kind == "rejected":
                    raise landing.DeliveryRejected(**value)
                day[source] = value

            def start_next(sources: tuple[str, ...], following=dates[i] if i < len(dates) else None) -> None:
                for source in sources if following else ():
                    if source not in started_next:
                        started_next[source] = pool.submit(_land_one, source, following)

            day["release"] = landing.release_orphans(
                ds, paths, locked=lambda: start_next(landing.ORPHAN_SOURCES),
                merchants_read=lambda: start_next(settings.SOURCES))
            day["delivered"] = sum(day[s]["delivered"] for s in settings.SOURCES)
            day["seconds"] = time.monotonic() - t0
            delivered += day["delivered"]
            out.append(day)
            elapsed = time.monotonic() - started
            log.info("landed %s (%d of %d): %d rows in %.1fs; backlog so far %d rows in %.0fs (%.0f rows/s)",
                     ds, i, len(dates), day["delivered"], day["seconds"], delivered, elapsed,
                     delivered / max(elapsed, 1e-9))
    return out
