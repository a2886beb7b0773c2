"""`program-reporting publish`, `figures`, `diff`, `retention`: write-audit-publish
of a built run, what was published, and the policy on what is kept."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
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


# figures, diff: core/published.py

FIGURES_EXAMPLES = """examples:
  program-reporting figures --program SPARK-2020 --ds 2020-06-04 --table kpi_program_daily
      the figures of 4 June in the current set
  program-reporting figures --ds 2020-06-04 --table kpi_program_daily --as-of 2020-06-05
      the figures of 4 June as published by the end of 5 June (UTC)
  program-reporting figures --run 2020-06-05_20200605T020000 --table kpi_segment_daily --format csv > june5.csv
      one run's segment figures, for a script

--as-of takes a date (the end of that day, UTC) or a timestamp (UTC unless it
names its offset, e.g. 2020-06-05T08:00+08:00). Exit 0 printed, 1 nothing was
published by then (or no such run), 2 usage error."""

DIFF_EXAMPLES = """examples:
  program-reporting diff 2020-06-04_20200604T020000 2020-06-05_20200605T020000
  program-reporting diff RUN_A RUN_B --table kpi_program_daily --format csv > changes.csv

csv: one row per changed cell, header table,key,column,old,new; key is the
row's key columns as name=value pairs joined by ';'. A row that appears or
disappears lists every one of its cells (key columns included), with an empty
old or new. Exit 0 printed (changes or none), 1 no such run, 2 usage error."""

FORMATS = ("table", "csv", "json")


def _text(value) -> str:
    """A published value as text: exact decimals, ISO dates, empty for null."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _json_value(value):
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact: a float would round a published figure
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    if len(header) > 12 and len(rows) <= 5:
        # a KPI row has ~30 columns: a few rows read better turned on their side
        header, rows = (
            ["column", *(f"row {i + 1}" for i in range(len(rows)))],
            [[c, *(r[i] for r in rows)] for i, c in enumerate(header)],
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def figures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--program", help="only this program_code")
    parser.add_argument("--ds", help="only this business date (as_of_date) YYYY-MM-DD")
    parser.add_argument(
        "--table", action="append", help="kpi_program_daily, kpi_segment_daily or kpi_target_progress (repeatable)"
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--as-of", metavar="TIMESTAMP", help="the set current at that time (default: the current set)")
    when.add_argument("--run", metavar="RUN_ID", help="that run's published set")
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")


def figures_command(args: argparse.Namespace) -> int:
    from program_reporting.core import published

    try:
        tables = published.check_tables(args.table)
        if args.format == "csv" and len(tables) > 1:
            raise ValueError(
                f"--format csv prints one table, and {len(tables)} match: give --table ({', '.join(tables)})"
            )
        if args.ds:
            published.settings.parse_ds(args.ds)
        moment = published.parse_as_of(args.as_of) if args.as_of else None
    except (ValueError, published.HistoryError) as exc:
        print(f"figures: {exc}", file=sys.stderr)
        return 2
    try:
        if args.run:
            run = published.run_named(args.run)
        elif moment is not None:
            run = published.run_as_of(moment)
        else:
            run = published.current_run()
        found = published.figures(run, tables, program=args.program, ds=args.ds)
    except published.HistoryError as exc:
        print(f"figures: {exc}", file=sys.stderr)
        return 1
    if args.format == "csv":
        ((columns, rows),) = found.values()
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(columns)
        out.writerows([_text(v) for v in row] for row in rows)
    elif args.format == "json":
        doc = {
            "run_id": run.run_id,
            "ds": run.ds,
            "published_at": run.published_at.isoformat(),
            "superseded_at": run.superseded_at.isoformat() if run.superseded_at else None,
            "tables": {
                table: [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]
                for table, (columns, rows) in found.items()
            },
        }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(run.describe())
        for table, (columns, rows) in found.items():
            print(f"\n{table}: {len(rows)} row(s)")
            if rows:
                _print_table(columns, [[_text(v) for v in row] for row in rows])
    return 0


def diff_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="the earlier run (old values)")
    parser.add_argument("run_b", metavar="RUN_B", help="the later run (new values)")
    parser.add_argument("--table", action="append", help="only this table (repeatable); default: all three")
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")


def diff_command(args: argparse.Namespace) -> int:
    from program_reporting.core import published

    try:
        tables = published.check_tables(args.table)
    except published.HistoryError as exc:
        print(f"diff: {exc}", file=sys.stderr)
        return 2
    try:
        run_a, run_b = published.run_named(args.run_a), published.run_named(args.run_b)
        changes = published.diff_runs(run_a, run_b, tables)
    except published.HistoryError as exc:
        print(f"diff: {exc}", file=sys.stderr)
        return 1
    rows = [[c.table, c.key_text, c.column, c.old or "", c.new or ""] for c in changes]
    if args.format == "csv":
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["table", "key", "column", "old", "new"])
        out.writerows(rows)
    elif args.format == "json":
        doc = {
            "run_a": run_a.run_id,
            "run_b": run_b.run_id,
            "changes": [
                {"table": c.table, "key": dict(c.key), "column": c.column, "old": c.old, "new": c.new} for c in changes
            ],
        }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(f"from {run_a.describe()}\n  to {run_b.describe()}")
        per_table = {t: sum(c.table == t for c in changes) for t in tables}
        print("; ".join(f"{t}: {n} cell(s) changed" for t, n in per_table.items()))
        if rows:
            print()
            _print_table(["table", "key", "column", "old", "new"], rows)
    return 0
