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


# erase: landing/erasure.py

ERASE_EXAMPLES = """examples:
  program-reporting erase --merchant M00000042 --reason "owner's request of 2020-07-01 (ticket 1234)"
  program-reporting erase --merchant M00000042 --reason "PIPL art. 47 request" --by dpo@example.org --json

Prints the files changed, the files of the drop folder that still hold the
merchant's personal data (the source must erase them: docs/contract/extracts.md),
and appends the erasure record to <home>/audit_trail/erasures.jsonl. Published
figures are never changed: they hold no personal data. Exit 0 erased (or
nothing left to erase), 2 usage error."""


def erase_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merchant", required=True, metavar="MERCHANT_ID", help="the merchant whose owner asked")
    parser.add_argument("--reason", required=True, metavar="TEXT", help="why (the request), kept in the erasure record")
    parser.add_argument("--by", metavar="NAME", help="who erases, for the record (default: the OS user)")
    parser.add_argument("--json", action="store_true", help="print the erasure record as JSON")


def erase_command(args: argparse.Namespace) -> int:
    from program_reporting.landing.erasure import erase, records_path

    paths = settings.paths()
    try:
        record = erase(paths, args.merchant, args.reason, by=args.by)
    except ValueError as exc:
        print(f"erase: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(record, indent=1, ensure_ascii=False))
        return 0
    print(f"erased the personal data of merchant {record['merchant_id']} ({len(record['changed'])} file(s) changed)")
    for change in record["changed"]:
        print(f"  {change['place']:<17} {change['file']}")
    if record["drop_files_holding_data"]:
        print("still in the drop folder (the source's, not changed; the source must erase them):")
        for name in record["drop_files_holding_data"]:
            print(f"  {paths.drop / name}")
    print(f"recorded in {records_path(paths)}")
    return 0
