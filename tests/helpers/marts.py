"""Small, internally consistent KPI mart sets for gate, publish and report tests.

`write_marts` writes what `build.stage_audit` leaves behind: a DuckDB file with
kpi_program_daily, kpi_segment_daily, kpi_target_progress (kpis.md types) and
run_info. Segments are generated first and the program rows are their sums,
so every critical check passes; tests then break one thing on purpose."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb

from program_reporting.core import reference

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")

SEGMENTS = {
    "SPARK-2020": [("CN-GD", "convenience_store", "micro"), ("CN-ZJ", "grocery", "small")],
    "SPRING-THUNDER-2020": [("CN-ZJ", "exporter", "medium")],
    "PPP-2020": [("US-VT", "restaurant", "small"), ("US-NY", "retail_shop", "micro")],
}

ADDITIVE = [
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
]
MONEY = {
    "credit_limit_total",
    "avg_limit_per_merchant",
    "drawn_to_date",
    "goods_purchased_on_day",
    "repaid_to_date",
    "written_off_to_date",
    "outstanding_balance",
    "par30_balance",
    "interest_subsidy_cost_to_date",
}
RATES = [
    "utilization_rate",
    "par30_rate",
    "par90_rate",
    "default_rate",
    "reporting_coverage",
    "jobs_retention_rate",
    "survival_rate_90d",
]

PROGRAM_DAILY_DDL = """CREATE TABLE kpi_program_daily (
  program_code VARCHAR, as_of_date DATE, enrolled_merchants BIGINT, active_merchants BIGINT,
  exited_merchants BIGINT, open_credit_lines BIGINT, merchants_with_credit BIGINT,
  credit_limit_total DECIMAL(18,2), avg_limit_per_merchant DECIMAL(18,2), drawn_to_date DECIMAL(18,2),
  goods_purchased_on_day DECIMAL(18,2), repaid_to_date DECIMAL(18,2), written_off_to_date DECIMAL(18,2),
  outstanding_balance DECIMAL(18,2), utilization_rate DECIMAL(12,6), par30_balance DECIMAL(18,2),
  par30_rate DECIMAL(12,6), par90_rate DECIMAL(12,6), default_rate DECIMAL(12,6),
  interest_subsidy_cost_to_date DECIMAL(18,2), reporting_merchants BIGINT, reporting_coverage DECIMAL(12,6),
  jobs_baseline BIGINT, jobs_current BIGINT, jobs_retained BIGINT, jobs_added BIGINT,
  jobs_retention_rate DECIMAL(12,6), survival_cohort_90d BIGINT, survival_rate_90d DECIMAL(12,6))"""

SEGMENT_DAILY_DDL = """CREATE TABLE kpi_segment_daily (
  program_code VARCHAR, as_of_date DATE, region VARCHAR, business_type VARCHAR, size_class VARCHAR,
  enrolled_merchants BIGINT, active_merchants BIGINT, exited_merchants BIGINT, open_credit_lines BIGINT,
  merchants_with_credit BIGINT, credit_limit_total DECIMAL(18,2), drawn_to_date DECIMAL(18,2),
  goods_purchased_on_day DECIMAL(18,2), repaid_to_date DECIMAL(18,2), written_off_to_date DECIMAL(18,2),
  outstanding_balance DECIMAL(18,2), par30_balance DECIMAL(18,2), interest_subsidy_cost_to_date DECIMAL(18,2),
  reporting_merchants BIGINT, jobs_baseline BIGINT, jobs_current BIGINT, jobs_retained BIGINT, jobs_added BIGINT)"""

TARGET_DDL = """CREATE TABLE kpi_target_progress (
  program_code VARCHAR, as_of_date DATE, metric VARCHAR, target_value DECIMAL(18,2),
  actual_value DECIMAL(18,2), progress_rate DECIMAL(12,6))"""


def _div(a, b, q=MICRO):
    if b in (None, 0) or a is None:
        return None
    return (Decimal(a) / Decimal(b)).quantize(q, rounding=ROUND_HALF_UP)


def segment_rows(program: str, day: int, bump: int = 0) -> list[dict]:
    usd = reference.programs()[program].currency == "USD"
    rows = []
    for k, (region, btype, size) in enumerate(SEGMENTS[program], start=1):
        enrolled = 10 * k + day + bump
        drawn = Decimal(500 * k * (day + 1))
        repaid = Decimal(100 * (day + 1))
        written_off = Decimal(10 * day)
        rows.append(
            {
                "region": region,
                "business_type": btype,
                "size_class": size,
                "enrolled_merchants": enrolled,
                "active_merchants": enrolled - 1,
                "exited_merchants": 1,
                "open_credit_lines": 5 + day,
                "merchants_with_credit": 4 + day,
                "credit_limit_total": Decimal(5000 * k + 1000 * day),
                "drawn_to_date": drawn,
                "goods_purchased_on_day": Decimal(500 * k),
                "repaid_to_date": repaid,
                "written_off_to_date": written_off,
                "outstanding_balance": drawn - repaid - written_off,
                "par30_balance": Decimal(25 * day),
                "interest_subsidy_cost_to_date": None if usd else (Decimal("1.37") * (day + 1) * k).quantize(CENT),
                "reporting_merchants": 3,
                "jobs_baseline": 20 * k,
                "jobs_current": 18 * k + day,
                "jobs_retained": 18 * k,
                "jobs_added": day,
            }
        )
    return rows


def program_row(segments: list[dict]) -> dict:
    row = {}
    for c in ADDITIVE:
        values = [s[c] for s in segments]
        row[c] = None if any(v is None for v in values) else sum(values)
    row["avg_limit_per_merchant"] = _div(row["credit_limit_total"], row["merchants_with_credit"], CENT)
    row["utilization_rate"] = _div(row["outstanding_balance"], row["credit_limit_total"])
    row["par30_rate"] = _div(row["par30_balance"], row["outstanding_balance"])
    row["par90_rate"] = _div(0, row["outstanding_balance"])
    row["default_rate"] = _div(row["written_off_to_date"], row["drawn_to_date"])
    row["reporting_coverage"] = _div(row["reporting_merchants"], row["enrolled_merchants"])
    row["jobs_retention_rate"] = _div(row["jobs_retained"], row["jobs_baseline"])
    row["survival_cohort_90d"] = 0
    row["survival_rate_90d"] = None
    return row


def write_marts(
    path: Path,
    run_id: str,
    ds: str,
    programs=("SPARK-2020", "PPP-2020"),
    start: str = "2020-06-02",
    bump: int = 0,
    built_at: str | None = None,
) -> Path:
    """Write a valid candidate set for dates start..ds. `bump` shifts enrolled
    merchants (consistently), so sets of different runs differ in content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(ds)
    targets = reference.program_targets()
    con = duckdb.connect(str(path))
    try:
        con.execute(PROGRAM_DAILY_DDL)
        con.execute(SEGMENT_DAILY_DDL)
        con.execute(TARGET_DDL)
        con.execute("CREATE TABLE run_info (run_id VARCHAR, ds DATE, built_at TIMESTAMPTZ)")
        pd_cols = [
            "program_code",
            "as_of_date",
            *ADDITIVE[:7],
            "avg_limit_per_merchant",
            *ADDITIVE[7:11],
            "utilization_rate",
            "par30_balance",
            "par30_rate",
            "par90_rate",
            "default_rate",
            "interest_subsidy_cost_to_date",
            "reporting_merchants",
            "reporting_coverage",
            "jobs_baseline",
            "jobs_current",
            "jobs_retained",
            "jobs_added",
            "jobs_retention_rate",
            "survival_cohort_90d",
            "survival_rate_90d",
        ]
        seg_cols = ["program_code", "as_of_date", "region", "business_type", "size_class", *ADDITIVE]
        pd_rows, seg_rows, tp_rows = [], [], []
        for program in programs:
            for day in range((last - first).days + 1):
                d = first + dt.timedelta(days=day)
                segs = segment_rows(program, day, bump)
                prow = program_row(segs)
                prow.update(program_code=program, as_of_date=d)
                pd_rows.append([prow[c] for c in pd_cols])
                for s in segs:
                    s.update(program_code=program, as_of_date=d)
                    seg_rows.append([s[c] for c in seg_cols])
                for t_program, metric, target in targets:
                    if t_program == program:
                        actual = prow[metric]
                        tp_rows.append([program, d, metric, target, actual, _div(actual, target)])
        con.executemany(
            f"INSERT INTO kpi_program_daily ({', '.join(pd_cols)}) VALUES ({', '.join('?' * len(pd_cols))})", pd_rows
        )
        con.executemany(
            f"INSERT INTO kpi_segment_daily ({', '.join(seg_cols)}) VALUES ({', '.join('?' * len(seg_cols))})", seg_rows
        )
        if tp_rows:
            con.executemany("INSERT INTO kpi_target_progress VALUES (?, ?, ?, ?, ?, ?)", tp_rows)
        con.execute(
            "INSERT INTO run_info VALUES (?, ?, ?)", [run_id, ds, built_at or dt.datetime.now(dt.UTC).isoformat()]
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return path


def write_audit(paths, run_id: str, ds: str, fresh: bool = True, **kwargs) -> Path:
    """The candidate set of a run where the build leaves it: audit/<run_id>/kpi.duckdb,
    with (unless `fresh` is False) a freshness record saying every landed source
    passed, as the build's `dbt source freshness` writes it beside the set.
    test_gate_freshness.py runs the real dbt for the other verdicts."""
    if fresh:
        write_freshness(paths.audit / run_id / "source_freshness.json")
    return write_marts(paths.audit / run_id / "kpi.duckdb", run_id, ds, **kwargs)


def write_freshness(path: Path, age_hours: float = 0.1) -> Path:
    """A source_freshness.json in dbt's sources.json format: the three landed sources, status pass."""
    now = dt.datetime.now(dt.UTC)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = [
        {
            "unique_id": f"source.program_reporting.raw.{source}",
            "max_loaded_at": (now - dt.timedelta(hours=age_hours)).isoformat(),
            "snapshotted_at": now.isoformat(),
            "max_loaded_at_time_ago_in_s": age_hours * 3600,
            "status": "pass",
            "criteria": {
                "warn_after": {"count": 26, "period": "hour"},
                "error_after": {"count": 50, "period": "hour"},
                "filter": None,
            },
        }
        for source in ("credit_events", "employment_reports", "merchants")
    ]
    path.write_text(json.dumps({"metadata": {"generated_at": now.isoformat()}, "results": results}))
    return path


def mutate(db: Path, *statements: str) -> None:
    """Break a candidate set on purpose."""
    con = duckdb.connect(str(db))
    try:
        for s in statements:
            con.execute(s)
        con.execute("CHECKPOINT")
    finally:
        con.close()
