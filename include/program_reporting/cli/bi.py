"""The BI server's command: `bi` (what `make bi` runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from program_reporting.bi.server import BiError, serve
from program_reporting.core import settings
from program_reporting.warehouse.semantic import SEMANTIC_DIR, SemanticLayerError

BI_EXAMPLES = """examples:
  PROGRAM_REPORTING_BI_ADMIN_PASSWORD='a long passphrase' make bi
  PROGRAM_REPORTING_BI_PORT=8090 PROGRAM_REPORTING_BI_ADMIN_PASSWORD=... program-reporting bi
  program-reporting bi --semantic-dir tests/data/semantic   # metrics from another semantic layer
"""

NO_PASSWORD = (
    "bi: PROGRAM_REPORTING_BI_ADMIN_PASSWORD is not set. Superset's admin "
    "({user}) has no default password: set one, e.g.\n"
    "  PROGRAM_REPORTING_BI_ADMIN_PASSWORD='a long passphrase' make bi"
)


def bi_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=None, help="port on 127.0.0.1 (default PROGRAM_REPORTING_BI_PORT, else 8088)"
    )
    parser.add_argument(
        "--semantic-dir",
        type=Path,
        default=SEMANTIC_DIR,
        help="the dbt semantic layer the dataset metrics are generated from (default dbt_project/models/semantic)",
    )


def bi_command(args: argparse.Namespace) -> int:
    password = settings.bi_admin_password()
    if password is None:
        print(NO_PASSWORD.format(user=settings.bi_admin_user()), file=sys.stderr)
        return 2
    try:
        return serve(password, port=args.port, semantic_dir=args.semantic_dir, log=lambda m: print(m, flush=True))
    except (BiError, SemanticLayerError) as exc:
        print(f"bi: {exc}", file=sys.stderr)
        return 1
