"""The `program-reporting` console script.

Each subcommand lives in the module named for what it does; that module
provides `add_arguments(parser)` and `main(args) -> int`. Modules are imported
only when their subcommand runs, so `--help` stays fast and one broken
module cannot break the others."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("tools.simulate.simulator", "write contract-conforming source deliveries into the drop folder"),
    "land": ("landing.land", "land one source's delivery for a business date into the raw layer"),
    "build": ("warehouse.build", "build the dbt warehouse for a business date"),
    "validate": ("validation.gate", "run the Great Expectations gate on a built run"),
    "publish": ("publishing.wap", "publish a validated run's KPI tables atomically"),
    "run": ("orchestration.run", "run the nightly pipeline for a business date (or a range) through Airflow"),
    "demo": ("tools.simulate.demo", "simulate a week and run the nightly pipeline for each day (what `make run` does)"),
    "import-ppp": ("tools.ppp.convert", "turn SBA Paycheck Protection Program FOIA CSVs into PPP-2020 deliveries"),
    "airflow": ("orchestration.standalone", "start Airflow standalone with the project's DAGs (UI on localhost:8080)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="program-reporting",
        description=(
            "Nightly warehouse pipeline for small-business support programs. "
            "Settings: PROGRAM_REPORTING_DROP (default ./data/drop) and "
            "PROGRAM_REPORTING_HOME (default ./data/warehouse), relative to the repository root."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the command name first, then let its module define the rest.
    known, _rest = parser.parse_known_args(argv)
    module_name, help_text = COMMANDS[known.command]
    module = importlib.import_module(f"program_reporting.{module_name}")

    full = argparse.ArgumentParser(prog="program-reporting", description=parser.description)
    full.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = full.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cmd = sub.add_parser(known.command, help=help_text, description=(module.__doc__ or help_text).strip(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(cmd)
    args = full.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
