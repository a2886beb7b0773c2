"""The `program-reporting` console script: one table of commands.

Each stage's commands live beside each other in `cli/<stage>.py`, apart from
the stage's logic: for a command `name`, the functions `<name>_arguments(parser)`
and `<name>_command(args) -> int` (dashes become underscores), and optionally
`<NAME>_EXAMPLES`, shown after the options. Its --help description is the
docstring of the module that does the work. A command's
module is imported only when that command runs, so `--help` stays fast and one
broken stage cannot break the others' commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NamedTuple


class Command(NamedTuple):
    cli_module: str  # program_reporting.cli.<cli_module>
    described_by: str  # the module whose docstring is the command's --help description
    help: str
    arguments: str = ""  # the arguments function, when not <name>_arguments


COMMANDS: dict[str, Command] = {
    "simulate": Command(
        "tools", "tools.simulate.simulator", "write contract-conforming source deliveries into the drop folder"
    ),
    "land": Command("landing", "landing.land", "land one source's delivery for a business date into the raw layer"),
    "erase": Command(
        "landing",
        "landing.erasure",
        "erase a merchant's personal data from everything the pipeline keeps, on the owner's request",
    ),
    "build": Command("warehouse", "warehouse.build", "build the dbt warehouse for a business date"),
    "validate": Command("validation", "validation.gate", "run the Great Expectations gate on a built run"),
    "publish": Command("publishing", "publishing.wap", "publish a validated run's KPI tables atomically"),
    "figures": Command(
        "publishing",
        "core.published",
        "print published figures as they were published: the current set, a run's, or the one current at a time",
    ),
    "diff": Command("publishing", "core.published", "print the cells that changed between two published runs"),
    "retention": Command(
        "publishing",
        "publishing.retention",
        "remove old audit sets of withheld runs, temp files, Airflow logs and landing failures (--dry-run lists them)",
    ),
    "verify-reports": Command(
        "reporting",
        "reporting.verify",
        "re-hash every report and the chain of reports/index.jsonl; exit 1 names the first break",
    ),
    "run": Command(
        "orchestration",
        "orchestration.run",
        "run the nightly pipeline for a business date (or a range) through Airflow",
    ),
    "backfill": Command(
        "orchestration",
        "orchestration.backfill",
        "backfill business dates through Airflow's scheduler (airflow backfill create), in date order",
    ),
    "demo": Command(
        "tools",
        "tools.simulate.demo",
        "simulate a week and run the nightly pipeline for each day (what `make run` does)",
    ),
    "import-ppp": Command(
        "tools", "tools.ppp.convert", "turn SBA Paycheck Protection Program FOIA CSVs into PPP-2020 deliveries"
    ),
    "airflow": Command(
        "orchestration",
        "orchestration.standalone",
        "start Airflow standalone with the project's DAGs (UI on localhost:8080)",
    ),
    "bi": Command(
        "bi",
        "bi.server",
        "start Apache Superset with the Program KPIs dashboard on 127.0.0.1 (what `make bi` does)",
    ),
    "init-warehouse": Command(
        "postgres",
        "postgres.production",
        "production: create the warehouse database, published schemas, bi_reader and regional access",
        arguments="no_arguments",
    ),
    "grant-region": Command(
        "postgres", "postgres.access", "production: let a role read only the rows of the regions named"
    ),
    "revoke-region": Command(
        "postgres", "postgres.access", "production: stop a role reading the rows of the regions named (or --all)"
    ),
    "check-secrets": Command(
        "postgres",
        "postgres.production",
        "production: refuse a missing secret or an .env.example placeholder",
        arguments="no_arguments",
    ),
    "load-raw-pg": Command(
        "postgres", "postgres.raw", "production: load the raw layer into PostgreSQL for dbt", arguments="no_arguments"
    ),
    "publish-pg": Command(
        "postgres", "postgres.serving", "production: publish a validated set to the PostgreSQL serving schema"
    ),
}

DESCRIPTION = (
    "Nightly warehouse pipeline for small-business support programs. "
    "Settings: PROGRAM_REPORTING_DROP (default ./data/drop) and "
    "PROGRAM_REPORTING_HOME (default ./data/warehouse), relative to the repository root."
)


def _parser(command: str | None = None, description: str | None = None):
    """The top-level parser and, when `command` is given, that command's full subparser."""
    parser = argparse.ArgumentParser(prog="program-reporting", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, spec in COMMANDS.items():
        if name == command:
            return parser, sub.add_parser(
                name, help=spec.help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
            )
        sub.add_parser(name, help=spec.help, description=spec.help, add_help=False)
    return parser, None


def build_parser() -> argparse.ArgumentParser:
    return _parser()[0]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The command's name first; then its module defines the rest.
    known, _rest = build_parser().parse_known_args(argv)
    spec = COMMANDS[known.command]
    stage = importlib.import_module(f"program_reporting.cli.{spec.cli_module}")
    described_by = importlib.import_module(f"program_reporting.{spec.described_by}")
    function = known.command.replace("-", "_")
    parser, command_parser = _parser(known.command, (described_by.__doc__ or spec.help).strip())
    getattr(stage, spec.arguments or f"{function}_arguments")(command_parser)
    command_parser.epilog = getattr(stage, f"{function.upper()}_EXAMPLES", None)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(getattr(stage, f"{function}_command")(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
