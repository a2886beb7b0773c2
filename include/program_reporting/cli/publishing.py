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


# retention: publishing/retention.py


def retention_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="list what the policy would remove, with age and size; remove nothing"
    )


def retention_command(args: argparse.Namespace) -> int:
    from program_reporting.core.settings import paths
    from program_reporting.orchestration.airflow_env import airflow_env, airflow_log_folder
    from program_reporting.publishing import retention

    p = paths()
    try:
        plan, done = retention.apply(p, airflow_log_folder(airflow_env()), dry_run=args.dry_run)
    except ValueError as exc:
        print(f"retention: {exc}", file=sys.stderr)
        return 2
    print(f"retention policy: {plan.policy.describe()}")
    verb = "would remove" if args.dry_run else "removed"
    entries = plan.entries if args.dry_run else done
    for entry in entries:
        print(f"{verb if not entry.error else 'kept':<12}  {retention.line(entry, p)}")
    for note in plan.kept:
        print(f"kept          {note}")
    failed = [e for e in entries if e.error]
    gone = [e for e in entries if not e.error]
    total = f"{verb} {len(gone)} path(s), {retention.human_size(sum(e.size_bytes for e in gone))}"
    print(total + (f"; {len(failed)} could not be removed" if failed else ""))
    return 1 if failed else 0
