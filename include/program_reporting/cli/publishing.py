"""`program-reporting publish`: write-audit-publish of a built run."""

from __future__ import annotations

import argparse
import sys

from program_reporting.publishing.wap import audit_and_publish

# publish: publishing/wap.py


def publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", required=True, help="the run whose audit/<run_id>/kpi.duckdb to publish")
    parser.add_argument("--ds", required=True, help="the run's business date YYYY-MM-DD")
    parser.add_argument("--airflow-run-id", default=None, help="the Airflow DAG run this belongs to, for the report")
    parser.add_argument(
        "--skip-landed", action="store_true", help="do not re-check the landed deliveries (they were gated earlier)"
    )


def publish_command(args: argparse.Namespace) -> int:
    try:
        outcome = audit_and_publish(args.run_id, args.ds, args.airflow_run_id, landed=not args.skip_landed)
    except ValueError as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # not even the withheld run's report could be written
        print(f"withheld run {args.run_id} (ds {args.ds}), and its report could not be written: {exc}")
        return 1
    for g in outcome.gates:
        print(g.summary())
    print(f"report: {outcome.report_path}")
    if outcome.published:
        print(f"published run {outcome.run_id} (ds {outcome.ds}): {outcome.published_path}")
        return 0
    print(f"withheld run {outcome.run_id} (ds {outcome.ds}): {outcome.reason}")
    return 1
