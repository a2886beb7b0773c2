"""An independent, deliberately naive reading of kpis.md in plain Python.

It reads the landed raw layer (docs/architecture.md), walks every date and
every merchant and line with Decimal arithmetic, and returns the rows of
kpi_program_daily and kpi_segment_daily. It shares no code with the dbt
models: a test compares the two cell by cell on simulated data, so a
misreading of the spec has to be made twice, independently, to pass.

Slow on purpose (dates x lines); for small data only."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from program_reporting.core import reference

CENT = Decimal("0.01")
MONEY = {
    "credit_limit_total",
    "drawn_to_date",
    "goods_purchased_on_day",
    "repaid_to_date",
    "written_off_to_date",
    "outstanding_balance",
    "par30_balance",
    "interest_subsidy_cost_to_date",
}
MICRO = Decimal("0.000001")

ADDITIVE = (
    "enrolled_merchants",
    "active_merchants",
    "exited_merchants",
    "open_credit_lines",
    "merchants_with_credit",
    "credit_limit_total",
    "drawn_to_date",
    "goods_purchased_on_day",
    "repaid_to_date",
    "written_off_to_date",
    "outstanding_balance",
    "par30_balance",
    "interest_subsidy_cost_to_date",
    "reporting_merchants",
    "jobs_baseline",
    "jobs_current",
    "jobs_retained",
    "jobs_added",
)


def money(x: Decimal) -> Decimal:
    # Decimal's ROUND_HALF_UP is half away from zero.
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def rate(num, den) -> Decimal | None:
    if den is None or den == 0 or num is None:
        return None
    return (Decimal(num) / Decimal(den)).quantize(MICRO, rounding=ROUND_HALF_UP)


def _read(home: Path, source: str) -> list[dict]:
    files = sorted((home / "raw" / source).glob("ds=*/*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    rel = con.read_parquet([str(f) for f in files], union_by_name=True)
    cols = rel.columns
    return [dict(zip(cols, row)) for row in rel.fetchall()]


def _local_date(ts: dt.datetime, tz: ZoneInfo) -> dt.date:
    return ts.astimezone(tz).date()


def compute(home: Path) -> tuple[list[dict], list[dict]]:
    programs = reference.programs()
    rates = reference.benchmark_rates()
    merchants_raw = _read(home, "merchants")
    events_raw = _read(home, "credit_events")
    reports_raw = _read(home, "employment_reports")
    latest_ds = max(r["_ds"] for r in merchants_raw + events_raw + reports_raw)

    # --- merchant versions: identical duplicates once; order updated_at, _ds, _line
    version_cols = (
        "merchant_id",
        "program_code",
        "business_name",
        "region",
        "city",
        "business_type",
        "size_class",
        "registered_on",
        "enrolled_on",
        "status",
        "updated_at",
    )
    seen = set()
    versions: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(merchants_raw, key=lambda r: (r["updated_at"], r["_ds"], r["_line"])):
        key = tuple(r[c] for c in version_cols)
        if key in seen:
            continue
        seen.add(key)
        versions[r["merchant_id"]].append(r)

    def tz_of(program_code: str) -> ZoneInfo:
        return ZoneInfo(programs[program_code].time_zone)

    def version_at(mid: str, d: dt.date) -> dict | None:
        vs = versions.get(mid)
        if not vs:
            return None
        tz = tz_of(vs[0]["program_code"])
        in_force = None
        for v in vs:  # ascending; the last one with a local update date <= d wins
            if _local_date(v["updated_at"], tz) <= d:
                in_force = v
        if in_force is not None:
            return in_force
        return vs[0] if vs[0]["enrolled_on"] <= d else None

    # --- credit events: identical duplicate event_ids once (the earliest delivery's row)
    events: dict[str, dict] = {}
    for e in sorted(events_raw, key=lambda e: (e["_ds"], e["_line"])):
        events.setdefault(e["event_id"], e)
    lines: dict[str, list[dict]] = defaultdict(list)
    for e in events.values():
        lines[e["credit_line_id"]].append(e)

    # --- employment reports: report_id is unique (extracts.md); where the raw layer
    # holds one twice (an older ds delivered after a later one), the latest delivery's copy
    copies = {r["report_id"]: r for r in sorted(reports_raw, key=lambda r: (r["_ds"], r["_line"]))}
    # per merchant and month, latest reported_at then report_id
    best: dict[tuple[str, dt.date], dict] = {}
    for r in copies.values():
        k = (r["merchant_id"], r["period_month"])
        cur = best.get(k)
        if cur is None or (r["reported_at"], r["report_id"]) > (cur["reported_at"], cur["report_id"]):
            best[k] = r
    reports_by_merchant: dict[str, list[dict]] = defaultdict(list)
    for (mid, _month), r in best.items():
        reports_by_merchant[mid].append(r)

    def benchmark(currency: str, t: dt.date) -> Decimal | None:
        in_force = None
        for cur, start, value in rates:
            if cur == currency and dt.date.fromisoformat(start) <= t:
                if in_force is None or start > in_force[0]:
                    in_force = (start, value)
        return in_force[1] if in_force else None

    def line_state(evs: list[dict], tz: ZoneInfo, d: dt.date) -> dict:
        to_date = [e for e in evs if _local_date(e["event_at"], tz) <= d]
        by_type = defaultdict(list)
        for e in to_date:
            by_type[e["event_type"]].append(e)
        opened = sorted(by_type["line_opened"], key=lambda e: (e["event_at"], e["event_id"]))
        limits = sorted(by_type["line_opened"] + by_type["limit_changed"], key=lambda e: (e["event_at"], e["event_id"]))
        drawn = sum((e["amount"] for e in by_type["drawdown"]), Decimal(0))
        repaid = sum((e["amount"] for e in by_type["repayment"]), Decimal(0))
        written = sum((e["amount"] for e in by_type["written_off"]), Decimal(0))
        outstanding = max(Decimal(0), drawn - repaid - written)
        # days past due: allocate repayments and write-offs to drawdowns by (due_on, event_at, event_id)
        pool = repaid + written
        dpd = 0
        for dd in sorted(by_type["drawdown"], key=lambda e: (e["due_on"], e["event_at"], e["event_id"])):
            take = min(pool, dd["amount"])
            pool -= take
            if dd["amount"] - take > 0 and dd["due_on"] < d:
                dpd = (d - dd["due_on"]).days
                break
        return {
            "open": bool(opened) and not by_type["line_closed"],
            "limit": limits[-1]["amount"] if limits else Decimal(0),
            "rate": opened[-1]["annual_interest_rate"] if opened else None,
            "drawn": drawn,
            "repaid": repaid,
            "written": written,
            "outstanding": outstanding,
            "goods_today": sum(
                (e["amount"] for e in by_type["drawdown"] if _local_date(e["event_at"], tz) == d), Decimal(0)
            ),
            "dpd": dpd,
        }

    program_rows, segment_rows = [], []
    merchants_by_program: dict[str, list[str]] = defaultdict(list)
    for mid, vs in versions.items():
        merchants_by_program[vs[0]["program_code"]].append(mid)
    lines_by_program: dict[str, list[str]] = defaultdict(list)
    for lid, evs in lines.items():
        mid = evs[0]["merchant_id"]
        if mid in versions:
            lines_by_program[versions[mid][0]["program_code"]].append(lid)

    for code, mids in sorted(merchants_by_program.items()):
        prog = programs[code]
        tz = ZoneInfo(prog.time_zone)
        first = min(v["enrolled_on"] for m in mids for v in versions[m])
        subsidy_to_date: dict[str, Decimal] = defaultdict(Decimal)  # per line, full precision
        d = first
        while d <= latest_ds:
            seg = defaultdict(lambda: defaultdict(Decimal))
            credit_merchants = defaultdict(set)
            cohort = survivors = 0

            for mid in mids:
                v = version_at(mid, d)
                if v is None or v["enrolled_on"] > d:
                    continue
                key = (v["region"], v["business_type"], v["size_class"])
                s = seg[key]
                s["enrolled_merchants"] += 1
                s["active_merchants"] += v["status"] == "active"
                s["exited_merchants"] += v["status"] == "exited"
                month = d.replace(day=1)
                months = [r for r in reports_by_merchant.get(mid, []) if r["period_month"] <= month]
                if months:
                    r = max(months, key=lambda r: r["period_month"])
                    s["reporting_merchants"] += 1
                    s["jobs_baseline"] += r["baseline_employees"]
                    s["jobs_current"] += r["employees"]
                    s["jobs_retained"] += min(r["employees"], r["baseline_employees"])
                    s["jobs_added"] += max(r["employees"] - r["baseline_employees"], 0)
                if v["enrolled_on"] <= d - dt.timedelta(days=90):
                    cohort += 1
                    at90 = version_at(mid, v["enrolled_on"] + dt.timedelta(days=90)) or versions[mid][0]
                    survivors += at90["status"] != "exited"

            bench = benchmark(prog.currency, d)
            for lid in lines_by_program[code]:
                evs = lines[lid]
                mid = evs[0]["merchant_id"]
                v = version_at(mid, d) or versions[mid][0]
                st = line_state(evs, tz, d)
                if bench is not None and st["rate"] is not None:
                    subsidy_to_date[lid] += st["outstanding"] * max(Decimal(0), bench - st["rate"]) / 365
                key = (v["region"], v["business_type"], v["size_class"])
                s = seg[key]
                if st["open"]:
                    s["open_credit_lines"] += 1
                    s["credit_limit_total"] += st["limit"]
                    credit_merchants[key].add(mid)
                s["drawn_to_date"] += st["drawn"]
                s["goods_purchased_on_day"] += st["goods_today"]
                s["repaid_to_date"] += st["repaid"]
                s["written_off_to_date"] += st["written"]
                s["outstanding_balance"] += st["outstanding"]
                if st["dpd"] >= 30:
                    s["par30_balance"] += st["outstanding"]
                    s["_par90"] += st["outstanding"] if st["dpd"] >= 90 else 0
                s["interest_subsidy_cost_to_date"] += subsidy_to_date[lid]

            has_series = any(cur == prog.currency for cur, _, _ in rates)
            total = defaultdict(Decimal)
            subsidy = Decimal(0) if has_series else None
            for key, s in seg.items():
                s["merchants_with_credit"] = Decimal(len(credit_merchants[key]))
                for c in ADDITIVE:
                    total[c] += s[c]
                total["_par90"] += s["_par90"]
                if not any(s[c] for c in ADDITIVE):
                    continue
                row = {c: (money(s[c]) if isinstance(s[c], Decimal) and c in MONEY else int(s[c])) for c in ADDITIVE}
                # kpis.md: the program's subsidy is the sum of the rounded segment figures.
                row["interest_subsidy_cost_to_date"] = money(s["interest_subsidy_cost_to_date"]) if has_series else None
                if has_series:
                    subsidy += row["interest_subsidy_cost_to_date"]
                segment_rows.append(
                    {
                        "program_code": code,
                        "as_of_date": d,
                        "region": key[0],
                        "business_type": key[1],
                        "size_class": key[2],
                        **row,
                    }
                )
            program_rows.append(
                {
                    "program_code": code,
                    "as_of_date": d,
                    "enrolled_merchants": int(total["enrolled_merchants"]),
                    "active_merchants": int(total["active_merchants"]),
                    "exited_merchants": int(total["exited_merchants"]),
                    "open_credit_lines": int(total["open_credit_lines"]),
                    "merchants_with_credit": int(total["merchants_with_credit"]),
                    "credit_limit_total": money(total["credit_limit_total"]),
                    "avg_limit_per_merchant": (
                        money(total["credit_limit_total"] / total["merchants_with_credit"])
                        if total["merchants_with_credit"]
                        else None
                    ),
                    "drawn_to_date": money(total["drawn_to_date"]),
                    "goods_purchased_on_day": money(total["goods_purchased_on_day"]),
                    "repaid_to_date": money(total["repaid_to_date"]),
                    "written_off_to_date": money(total["written_off_to_date"]),
                    "outstanding_balance": money(total["outstanding_balance"]),
                    "utilization_rate": rate(total["outstanding_balance"], total["credit_limit_total"]),
                    "par30_balance": money(total["par30_balance"]),
                    "par30_rate": rate(total["par30_balance"], total["outstanding_balance"]),
                    "par90_rate": rate(total["_par90"], total["outstanding_balance"]),
                    "default_rate": rate(total["written_off_to_date"], total["drawn_to_date"]),
                    "interest_subsidy_cost_to_date": subsidy,
                    "reporting_merchants": int(total["reporting_merchants"]),
                    "reporting_coverage": rate(total["reporting_merchants"], total["enrolled_merchants"]),
                    "jobs_baseline": int(total["jobs_baseline"]),
                    "jobs_current": int(total["jobs_current"]),
                    "jobs_retained": int(total["jobs_retained"]),
                    "jobs_added": int(total["jobs_added"]),
                    "jobs_retention_rate": rate(total["jobs_retained"], total["jobs_baseline"]),
                    "survival_cohort_90d": cohort,
                    "survival_rate_90d": rate(survivors, cohort),
                }
            )
            d += dt.timedelta(days=1)
    return program_rows, segment_rows
