"""The production backend's commands: `init-warehouse`, `check-secrets`, `publish-pg`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from program_reporting.core import settings
from program_reporting.postgres import connection as pg
from program_reporting.postgres.production import init_warehouse, secret_problems
from program_reporting.postgres.raw import load_raw
from program_reporting.postgres.serving import PublishError, publish

# publish_pg: postgres/serving.py


def publish_pg_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", required=True, help="the run whose validated set to publish")
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="the set's DuckDB file (default: audit/<run_id>/kpi.duckdb with a passing verdict, "
        "else published/runs/<run_id>/kpi.duckdb)",
    )


def publish_pg_command(args: argparse.Namespace) -> int:
    try:
        outcome = publish(args.run_id, source=args.source)
    except (PublishError, pg.PgError) as exc:
        print(f"publish-pg: withheld: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"publish-pg: {exc}", file=sys.stderr)
        return 2
    print(
        f"run {outcome.run_id} (ds {outcome.ds}) {outcome.reason} in PostgreSQL schema "
        f"{settings.PUBLISHED_SCHEMA} ({outcome.seconds:.1f}s)"
    )
    return 0


# init-warehouse, check-secrets, load-raw-pg: postgres/production.py, postgres/raw.py


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """These commands read their settings from the environment (interface.md)."""


def init_warehouse_command(args: argparse.Namespace) -> int:
    init_warehouse(bi_reader_password=os.environ.get("PROGRAM_REPORTING_BI_READER_PASSWORD"))
    print("warehouse database, published schema and bi_reader role ready")
    return 0


def check_secrets_command(args: argparse.Namespace) -> int:
    problems = secret_problems(os.environ)
    for problem in problems:
        print(f"refusing to start: {problem}", file=sys.stderr)
    return 1 if problems else 0


def load_raw_pg_command(args: argparse.Namespace) -> int:
    print(load_raw())
    return 0
