"""`program-reporting build`: the dbt build of a business date."""

from __future__ import annotations

import argparse
import datetime as dt

from program_reporting.core.settings import parse_ds
from program_reporting.warehouse.build import BuildFailed, build, stage_audit

# build: warehouse/build.py


def build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ds", required=True, help="business date YYYY-MM-DD")
    parser.add_argument("--run-id", default=None, help="run id for the build log (default manual-<ds>-<time>)")
    parser.add_argument(
        "--full-refresh", action="store_true", help="rebuild every model from the raw layer (identical results, slower)"
    )
    parser.add_argument(
        "--audit",
        metavar="RUN_ID",
        default=None,
        help="after the build, stage the kpi_ marts into audit/RUN_ID/kpi.duckdb",
    )


def build_command(args: argparse.Namespace) -> int:
    try:
        parse_ds(args.ds)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    run_id = args.run_id or f"manual-{args.ds}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    try:
        summary = build(args.ds, run_id, full_refresh=args.full_refresh)
    except BuildFailed as exc:
        print(f"build failed: {exc}")
        return 2 if "nothing to build" in str(exc) else 1
    print(
        f"built ds={summary['ds']} in {summary['seconds']}s "
        f"({'full refresh' if summary['full_refresh'] else 'restated from ' + summary['restate_from']}); "
        f"{len(summary['warnings'])} warnings; warehouse {summary['warehouse']}"
    )
    fresh = summary.get("source_freshness")
    print(
        "source freshness: "
        + (", ".join(f"{source} {status}" for source, status in fresh.items()) if fresh else "not recorded")
        + f"; dbt docs: {summary.get('docs_page') or 'not written'} ({summary.get('catalog_seconds')}s)"
    )
    if args.audit:
        print(f"audit set: {stage_audit(args.audit, args.ds)}")
    return 0
