"""`program-reporting verify-reports`: has any report been altered since it was written?"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# verify-reports: reporting/verify.py


def verify_reports_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--head",
        metavar="SHA256",
        help="a chain head recorded earlier (printed by an earlier run): the index must still hold that line",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        metavar="DIR",
        help="the reports folder to check (default: $PROGRAM_REPORTING_HOME/reports); published sets are "
        "looked for in DIR/../published/runs",
    )


def verify_reports_command(args: argparse.Namespace) -> int:
    from program_reporting.core.settings import paths
    from program_reporting.reporting.verify import verify

    if args.head is not None and not re.fullmatch(r"[0-9a-f]{64}", args.head):
        print(f"verify-reports: --head {args.head!r} is not a SHA-256 (64 lowercase hex digits)", file=sys.stderr)
        return 2
    if args.reports is not None:
        if not args.reports.is_dir():
            print(f"verify-reports: --reports {args.reports} is not a folder", file=sys.stderr)
            return 2
        reports, runs = args.reports, args.reports.parent / "published" / "runs"
    else:
        p = paths()
        reports, runs = p.reports, p.runs
    result = verify(reports, runs, args.head)
    if result.ok:
        print(f"reports verified: {result.summary()}")
        print(f"chain head: {result.head}")
        return 0
    print(f"FIRST BREAK: {result.problems[0]}")
    print(f"{len(result.problems)} problem(s) in {reports}:")
    for n, problem in enumerate(result.problems, 1):
        print(f"{n:>3}. {problem}")
    print(f"reports NOT verified: {len(result.problems)} problem(s); {result.summary()}")
    return 1
