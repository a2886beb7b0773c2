"""`program-reporting run`, `backfill` and `airflow`: the pipeline through Airflow."""

from __future__ import annotations

import argparse
import os
import sys

from program_reporting.core.settings import dates_between, parse_ds, paths
from program_reporting.orchestration import backfill, standalone
from program_reporting.orchestration.business_date import calendar_of_program
from program_reporting.orchestration.run import DEFAULT_WAIT_SECONDS, SENSOR_TIMEOUT_ENV, run_dates

# run: orchestration/run.py


def run_arguments(parser: argparse.ArgumentParser) -> None:
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--ds", metavar="YYYY-MM-DD", help="the business date to run")
    when.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first date of a range (with --to)")
    parser.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last date of a range (inclusive)")
    parser.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"how long to wait for a missing delivery (default: ${SENSOR_TIMEOUT_ENV} if set, else "
        f"{DEFAULT_WAIT_SECONDS:g})",
    )
    parser.add_argument(
        "--program",
        metavar="CODE",
        help="run the nightly DAG of this program's time zone (programs.csv), e.g. PPP-2020 runs "
        "program_reporting_nightly__america_new_york at 02:00 New York time after ds; default: "
        "program_reporting_nightly (Asia/Shanghai). Every calendar builds and publishes every program",
    )
    parser.add_argument(
        "--no-bi-refresh", action="store_true", help="do not run the Parquet exports and KPI brief after publishing"
    )


def run_command(args: argparse.Namespace) -> int:
    try:
        if args.ds:
            if args.date_to:
                raise ValueError("--to goes with --from, not with --ds")
            dates = [parse_ds(args.ds).isoformat()]
        else:
            if not args.date_to:
                raise ValueError("--from needs --to")
            dates = dates_between(args.date_from, args.date_to)
    except ValueError as exc:
        print(f"not run: {exc}")
        return 2
    try:
        calendar = calendar_of_program(args.program) if args.program else None
    except ValueError as exc:
        print(f"not run: {exc}")
        return 2
    outcomes = run_dates(dates, wait=args.wait, bi_refresh=not args.no_bi_refresh, calendar=calendar)
    for o in outcomes:
        if o.warning:
            print(f"WARNING ds={o.ds}: {o.warning}")
    last = outcomes[-1]
    if all(o.published for o in outcomes) and len(outcomes) == len(dates):
        print(
            f"published {len(outcomes)} date(s), {dates[0]} to {dates[-1]}; "
            f"current set: {paths().current_db}; reports: {paths().reports / 'index.html'}"
        )
        return 0
    sys.stderr.flush()
    print(f"NOT PUBLISHED ds={last.ds}: {last.reason}")
    return 1


# backfill: orchestration/backfill.py


def backfill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD", help="first business date")
    parser.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD", help="last business date")
    parser.add_argument(
        "--program",
        metavar="CODE",
        help="backfill the nightly DAG of this program's time zone (programs.csv); default: program_reporting_nightly",
    )
    parser.add_argument(
        "--max-active-runs",
        type=int,
        default=1,
        metavar="N",
        help="nights started at once (default 1); they still publish one after another, in date order",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs the backfill would create, create none")


def backfill_command(args: argparse.Namespace) -> int:
    try:
        dates = dates_between(args.date_from, args.date_to)
        calendar = calendar_of_program(args.program) if args.program else None
    except ValueError as exc:
        print(f"no backfill: {exc}")
        return 2
    if args.max_active_runs < 1:
        print("no backfill: --max-active-runs must be at least 1")
        return 2
    rc = backfill.create(dates[0], dates[-1], calendar, dry_run=args.dry_run, max_active_runs=args.max_active_runs)
    if rc == 0 and not args.dry_run:
        print(
            f"backfill of {len(dates)} date(s), {dates[0]} to {dates[-1]}, created: the scheduler runs it "
            "(`make airflow`); follow it in the UI's Backfill view"
        )
    return rc


# airflow: orchestration/standalone.py


def airflow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("AIRFLOW__API__PORT", "8080")),
        help="port of the Airflow UI and API (default 8080)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long to wait after SIGTERM before SIGKILL on shutdown (default 20)",
    )


def airflow_command(args: argparse.Namespace) -> int:
    return standalone.serve(port=args.port, grace=args.grace)
