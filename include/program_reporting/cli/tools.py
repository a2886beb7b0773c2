"""`program-reporting simulate`, `demo` and `import-ppp`: the tools beside the pipeline."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

from program_reporting.core.settings import SOURCES, parse_ds
from program_reporting.tools.ppp.convert import PPPImportError, import_files
from program_reporting.tools.simulate import demo
from program_reporting.tools.simulate.simulator import (
    DEFAULT_PROGRAMS,
    DEFAULT_START,
    MAX_BAD_ROW_SHARE,
    redeliver_ds,
    simulate,
)
from program_reporting.tools.simulate.simulator import log as simulator_log

# simulate: tools/simulate/simulator.py


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _date_arg(text: str) -> dt.date:
    try:
        return parse_ds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start",
        type=_date_arg,
        default=DEFAULT_START,
        help="first business date delivered, YYYY-MM-DD (default %(default)s)",
    )
    parser.add_argument("--days", type=int, default=7, help="number of consecutive business dates (default 7)")
    parser.add_argument(
        "--merchants",
        type=int,
        default=2000,
        help="merchants enrolled by the last day, all programs together (default 2000)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed; same seed, same bytes (default 42)")
    parser.add_argument(
        "--drop", type=Path, default=None, help="drop folder (default: PROGRAM_REPORTING_DROP, else ./data/drop)"
    )
    parser.add_argument(
        "--programs",
        default=",".join(DEFAULT_PROGRAMS),
        help="comma-separated program codes from the reference data (default %(default)s)",
    )
    parser.add_argument(
        "--bad-row-share",
        type=_share,
        default=0.002,
        help=f"share of contract-breaking rows per delivery, at most {MAX_BAD_ROW_SHARE} (default 0.002; 0 disables)",
    )
    parser.add_argument("--gzip-share", type=_share, default=0.15, help="share of gzipped data files (default 0.15)")
    parser.add_argument(
        "--crlf-share", type=_share, default=0.15, help="share of data files with CRLF line ends (default 0.15)"
    )
    parser.add_argument(
        "--late-share",
        type=_share,
        default=0.03,
        help="share of drawdowns/repayments posted 1-30 days late (default 0.03)",
    )
    parser.add_argument(
        "--redeliver",
        action="append",
        metavar="YYYY-MM-DD",
        default=[],
        help="do not simulate: deliver this existing ds again as a correction (repeatable)",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        action="append",
        default=None,
        help="with --redeliver: only this source (repeatable; default all three)",
    )
    parser.add_argument(
        "--summary-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the run summary (row counts, injected rows) as JSON to PATH",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _print_summary(summary: dict) -> None:
    progs = ", ".join(f"{code}: {p['merchants']:,}" for code, p in summary["programs"].items())
    print(
        f"simulated {summary['merchants']:,} merchants ({progs}), {summary['start']}..{summary['end']}, "
        f"seed {summary['seed']} -> {summary['drop']}"
    )
    print(f"{'ds':<12}" + "".join(f"{s:>20}" for s in SOURCES))
    for ds in sorted(summary["rows"]["merchants"]):
        marks = []
        for s in SOURCES:
            d = summary["deliveries"][s][ds]
            flag = ("z" if d["gzip"] else "") + ("r" if d["crlf"] else "")
            marks.append(f"{d['rows']:>17,} {flag:<2}")
        print(f"{ds:<12}" + "".join(marks))
    by_kind: dict[str, int] = {}
    for row in summary["injected"]:
        by_kind[row["source"]] = by_kind.get(row["source"], 0) + 1
    print("(z = gzipped, r = CRLF line ends)")
    print(
        f"injected rows: {len(summary['injected']):,} "
        f"({', '.join(f'{s} {c:,}' for s, c in by_kind.items()) or 'none'}); "
        f"expected orphans: {sum(sum(v.values()) for v in summary['orphans_expected'].values()):,}; "
        f"late postings: {sum(summary['late_postings'].values()):,}; took {summary['seconds']:.1f} s"
    )


def simulate_command(args: argparse.Namespace) -> int:
    if args.quiet:
        simulator_log.setLevel(logging.WARNING)
    try:
        if args.redeliver:
            results = [
                redeliver_ds(source, ds.strip(), drop=args.drop, seed=args.seed)
                for ds in args.redeliver
                for source in (args.source or SOURCES)
            ]
            if not args.quiet:
                for r in results:
                    print(
                        f"redelivered {r['source']} ds={r['ds']}: {len(r['changed_keys'])} rows corrected, "
                        f"row_count {r['control']['row_count']}"
                    )
            return 0
        summary = simulate(
            start=args.start,
            days=args.days,
            merchants=args.merchants,
            seed=args.seed,
            drop=args.drop,
            programs=[p.strip() for p in args.programs.split(",") if p.strip()],
            bad_row_share=args.bad_row_share,
            gzip_share=args.gzip_share,
            crlf_share=args.crlf_share,
            late_share=args.late_share,
            progress=not args.quiet,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"simulate: error: {exc}", file=sys.stderr)
        return 2
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not args.quiet:
        _print_summary(summary)
    return 0


# demo: tools/simulate/demo.py


def demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start",
        default=demo.DEFAULT_START,
        metavar="YYYY-MM-DD",
        help=f"first business date (default {demo.DEFAULT_START})",
    )
    parser.add_argument(
        "--days", type=int, default=demo.DEFAULT_DAYS, help=f"number of days (default {demo.DEFAULT_DAYS})"
    )
    parser.add_argument(
        "--merchants",
        type=int,
        default=demo.DEFAULT_MERCHANTS,
        help=f"merchants to simulate (default {demo.DEFAULT_MERCHANTS})",
    )
    parser.add_argument("--seed", type=int, default=2020, help="simulation seed (default 2020)")


def demo_command(args: argparse.Namespace) -> int:
    return demo.run_demo(start=args.start, days=args.days, merchants=args.merchants, seed=args.seed)


# import_ppp: tools/ppp/convert.py


def import_ppp_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="PPP FOIA CSV files (either schema), imported as one set"
    )
    parser.add_argument("--drop", metavar="DIR", help="drop folder (default: PROGRAM_REPORTING_DROP, ./data/drop)")
    parser.add_argument(
        "--ds",
        metavar="YYYY-MM-DD",
        help="business date of the deliveries (default: the latest approval or forgiveness date)",
    )
    parser.add_argument(
        "--replace", action="store_true", help="replace an existing, different delivery for the same ds"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="write the comparison of the published KPIs with the SBA's state table "
        "to $PROGRAM_REPORTING_HOME/reports/ppp_comparison/ (after a published run)",
    )
    parser.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        default="2020-06-30",
        help="--compare: the as-of date to compare (default 2020-06-30, the SBA report's date)",
    )
    parser.add_argument(
        "--sba-report",
        metavar="CSV",
        help="--compare: the SBA state table (State,LoanCount,NetDollars); default "
        "../shared/realdata/ppp/sba_reports/sba_ppp_report_20200630_state.csv",
    )
    parser.add_argument("--json", action="store_true", help="print the import summary as JSON")


def import_ppp_command(args: argparse.Namespace) -> int:
    if not args.files and not args.compare:
        print("import-ppp: give FILE(s) to import, or --compare (see --help)", file=sys.stderr, flush=True)
        return 2
    try:
        if args.files:
            result = import_files(args.files, drop=args.drop, ds=args.ds, replace=args.replace)
            if args.json:
                print(json.dumps(result.as_dict(), indent=2))
            else:
                print(f"ds={result.ds}: " + ", ".join(f"{s} {n} rows" for s, n in result.rows.items()))
                for s, rules in result.expected_quarantine.items():
                    print(f"  {s}: landing will quarantine {rules}")
                print(f"next: program-reporting run --ds {result.ds}")
        if args.compare:
            from program_reporting.tools.ppp import compare as ppp_compare

            out = ppp_compare.write_comparison(as_of=args.date, sba_report=args.sba_report)
            print(f"comparison written: {out['csv']}, {out['md']}, {out['html']}")
    except (PPPImportError, FileNotFoundError, ValueError) as exc:
        print(f"import-ppp failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
