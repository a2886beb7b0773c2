"""`program-reporting land`: one delivery, every source of a date, or a backlog."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from program_reporting.core import contract, settings
from program_reporting.core.settings import Paths
from program_reporting.landing.land import DeliveryNotReady, DeliveryRejected, land, release_orphans

# land: landing/land.py


def land_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        choices=[*settings.SOURCES, "all"],
        default="all",
        help="which source to land (default: all, merchants first)",
    )
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--ds", help="business date YYYY-MM-DD")
    when.add_argument(
        "--from",
        dest="date_from",
        metavar="YYYY-MM-DD",
        help="first date of a backlog (with --to): each date's three deliveries land in "
        "parallel, then its held orphans are released, then the next date",
    )
    parser.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last date of a backlog (inclusive)")
    parser.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="poll this long for _control.json before giving up (default 0; not with --from)",
    )
    parser.add_argument(
        "--release-orphans",
        action="store_true",
        help="after landing, retry held orphans of this and earlier days (always with --from)",
    )


def _wait_ready(source: str, ds: str, paths: Paths, seconds: float) -> None:
    control = paths.delivery_dir(source, ds) / contract.CONTROL_FILE
    deadline = time.monotonic() + seconds
    while not os.path.lexists(control) and time.monotonic() < deadline:
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def land_command(args: argparse.Namespace) -> int:
    paths = settings.paths()
    try:
        if args.date_from:
            return _land_backlog(args, paths)
        if args.date_to:
            raise ValueError("--to goes with --from, not with --ds")
        settings.parse_ds(args.ds)
    except ValueError as exc:
        print(f"land: {exc}", file=sys.stderr)
        return 2
    sources = list(settings.SOURCES) if args.source == "all" else [args.source]
    status, why = 0, ""
    for source in sources:
        _wait_ready(source, args.ds, paths, args.wait)
        try:
            record = land(source, args.ds, paths)
            print(json.dumps(record, sort_keys=False))
        except DeliveryNotReady as exc:
            print(f"not ready: {exc}", file=sys.stderr)
            status, why = (status, why) if status else (3, str(exc))
        except DeliveryRejected as exc:
            print(f"rejected: {exc}", file=sys.stderr)
            status, why = 2, str(exc)
    if args.release_orphans:
        print(json.dumps(release_orphans(args.ds, paths)))
    if status:
        print(f"land failed: {why}", file=sys.stderr)
    return status


def _land_backlog(args: argparse.Namespace, paths: Paths) -> int:
    from program_reporting.landing.backlog import land_days

    if not args.date_to:
        raise ValueError("--from needs --to")
    if args.source != "all" or args.wait:
        raise ValueError("a backlog lands every source of each date, as it is there: no --source, no --wait")
    dates = settings.dates_between(args.date_from, args.date_to)
    try:
        days = land_days(dates, paths)
    except (DeliveryNotReady, DeliveryRejected) as exc:
        print(f"land failed: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, DeliveryNotReady) else 2
    rows, seconds = sum(d["delivered"] for d in days), sum(d["seconds"] for d in days)
    print(f"landed {len(days)} date(s), {dates[0]} to {dates[-1]}: {rows} rows in {seconds:.0f} s")
    return 0
