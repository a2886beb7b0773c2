"""The production backend's commands: `init-warehouse`, `check-secrets`, `load-raw-pg`, `publish-pg`,
`grant-region`, `revoke-region`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from program_reporting.core import settings
from program_reporting.postgres import access
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


INIT_WAREHOUSE_EXAMPLES = """examples:
  PROGRAM_REPORTING_PG_HOST=db PROGRAM_REPORTING_PG_PASSWORD=... program-reporting init-warehouse
      as a role with CREATEDB and CREATEROLE; running it again changes nothing,
      and on a warehouse set up before regional access it adds it

settings: PROGRAM_REPORTING_PG_HOST, _PORT, _USER, _PASSWORD, _DATABASE (the
warehouse database, created when missing); PROGRAM_REPORTING_BI_READER_PASSWORD
(bi_reader's password, set when given). Then: program-reporting grant-region."""


def init_warehouse_command(args: argparse.Namespace) -> int:
    try:
        init_warehouse(bi_reader_password=os.environ.get("PROGRAM_REPORTING_BI_READER_PASSWORD"))
    except pg.PgError as exc:
        print(f"init-warehouse: {exc}", file=sys.stderr)
        return 1
    print(
        f"warehouse database, schemas {settings.PUBLISHED_SCHEMA}, {settings.PUBLISHED_HISTORY_SCHEMA} and "
        f"{settings.PUBLISHED_ACCESS_SCHEMA}, roles {settings.BI_READER_ROLE} and {settings.BI_REGIONAL_ROLE} "
        "and the regional row-level security ready"
    )
    return 0


# grant-region, revoke-region: postgres/access.py


def grant_region_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", metavar="ROLE", help="the role (created NOLOGIN when missing)")
    parser.add_argument(
        "regions", metavar="REGION", nargs="+", help="region codes of dbt_project/seeds/regions.csv, e.g. CN-GD"
    )


GRANT_REGION_EXAMPLES = """examples:
  program-reporting grant-region guangdong_office CN-GD
      guangdong_office (created NOLOGIN) reads Guangdong's rows of kpi_segment_daily
  program-reporting grant-region south_china CN-GD CN-GX CN-HI
  psql -c "ALTER ROLE guangdong_office LOGIN PASSWORD '...'"
      then the administrator gives it a login, or grants it to people's login
      roles: GRANT guangdong_office TO li_wei

A regional role sees its regions' rows of kpi_segment_daily, its history table
and view, and run_info and published_history.runs; program totals
(kpi_program_daily, kpi_target_progress) only program-wide roles read:
bi_reader and its members (GRANT bi_reader TO ...). Granting again changes
nothing. Exit 0 done, 1 PostgreSQL refused or init-warehouse not run, 2 a wrong
role name, a region not in the seed, or a superuser/BYPASSRLS role."""


def grant_region_command(args: argparse.Namespace) -> int:
    try:
        result = access.grant_region(args.role, args.regions)
    except access.AccessError as exc:
        print(f"grant-region: {exc}", file=sys.stderr)
        return 2
    except pg.PgError as exc:
        print(f"grant-region: {exc}", file=sys.stderr)
        return 1
    created = " (created NOLOGIN: give it a login or grant it to login roles)" if result.created else ""
    print(
        f"role {result.role}{created}: granted {', '.join(result.changed) or 'nothing new'}; "
        f"reads {', '.join(result.regions)}"
    )
    return 0


def revoke_region_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", metavar="ROLE", help="the role")
    parser.add_argument("regions", metavar="REGION", nargs="*", help="the regions to revoke")
    parser.add_argument("--all", dest="every_region", action="store_true", help="revoke every region of ROLE")


REVOKE_REGION_EXAMPLES = """examples:
  program-reporting revoke-region south_china CN-HI
  program-reporting revoke-region guangdong_office --all
      it sees no regional row any more and leaves bi_regional; the role itself
      is kept (DROP ROLE is the administrator's)

Revoking what was not granted changes nothing. The regions need not be in the
seed, so a region since removed can be revoked. Exit 0 done, 1 PostgreSQL
refused or init-warehouse not run, 2 a wrong role name or region code."""


def revoke_region_command(args: argparse.Namespace) -> int:
    if bool(args.regions) == args.every_region:
        print("revoke-region: name the regions or give --all, one of them", file=sys.stderr)
        return 2
    try:
        result = access.revoke_region(args.role, args.regions, every_region=args.every_region)
    except access.AccessError as exc:
        print(f"revoke-region: {exc}", file=sys.stderr)
        return 2
    except pg.PgError as exc:
        print(f"revoke-region: {exc}", file=sys.stderr)
        return 1
    print(
        f"role {result.role}: revoked {', '.join(result.changed) or 'nothing'}; "
        f"reads {', '.join(result.regions) or 'no region'}"
    )
    return 0


def check_secrets_command(args: argparse.Namespace) -> int:
    problems = secret_problems(os.environ)
    for problem in problems:
        print(f"refusing to start: {problem}", file=sys.stderr)
    return 1 if problems else 0


def load_raw_pg_command(args: argparse.Namespace) -> int:
    print(load_raw())
    return 0
