"""`program-reporting validate`: the Great Expectations gate, landed or on a built run."""

from __future__ import annotations

import argparse
import json
import sys

from program_reporting.validation.gate import GateError, GateResult, validate, validate_landed

# validate: validation/gate.py


def validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ds", required=True, help="business date YYYY-MM-DD")
    parser.add_argument("--run-id", help="run whose candidate set (audit/<run_id>/kpi.duckdb) to validate")
    parser.add_argument(
        "--landed",
        action="store_true",
        help="validate the landed deliveries of --ds (the default when no --run-id is given)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a summary")


def validate_command(args: argparse.Namespace) -> int:
    gates: list[GateResult] = []
    try:
        if args.landed or not args.run_id:
            gates.append(validate_landed(args.ds))
        if args.run_id:
            gates.append(validate(args.run_id, args.ds))
    except (GateError, ValueError) as exc:
        print(f"validate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([g.to_dict() for g in gates], indent=2, default=str))
    else:
        for g in gates:
            print(g.summary())
    ok = all(g.passed for g in gates)
    print("gate passed" if ok else "gate BLOCKED: " + "; ".join(g.reason() for g in gates if not g.passed))
    return 0 if ok else 1
