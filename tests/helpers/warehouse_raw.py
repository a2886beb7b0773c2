"""Writers for the landed raw layer (docs/architecture.md "Raw layer"), used by
the warehouse tests to feed dbt without the landing module: one folder
raw/<source>/ds=<ds>/ with rows.parquet (typed contract columns plus _ds,
_file, _line, _extra, _landed_at) and the _reconciliation.json commit marker.

Also holds the small hand-made data set of test_warehouse.py. No tests here."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb

COLUMNS = {
    "merchants": [
        ("merchant_id", "VARCHAR"),
        ("program_code", "VARCHAR"),
        ("business_name", "VARCHAR"),
        ("region", "VARCHAR"),
        ("city", "VARCHAR"),
        ("business_type", "VARCHAR"),
        ("size_class", "VARCHAR"),
        ("registered_on", "DATE"),
        ("enrolled_on", "DATE"),
        ("status", "VARCHAR"),
        ("updated_at", "TIMESTAMPTZ"),
    ],
    "credit_events": [
        ("event_id", "VARCHAR"),
        ("credit_line_id", "VARCHAR"),
        ("merchant_id", "VARCHAR"),
        ("event_type", "VARCHAR"),
        ("event_at", "TIMESTAMPTZ"),
        ("amount", "DECIMAL(14,2)"),
        ("currency", "VARCHAR"),
        ("annual_interest_rate", "DECIMAL(12,6)"),
        ("due_on", "DATE"),
        ("goods_category", "VARCHAR"),
    ],
    "employment_reports": [
        ("report_id", "VARCHAR"),
        ("merchant_id", "VARCHAR"),
        ("period_month", "DATE"),
        ("employees", "BIGINT"),
        ("baseline_employees", "BIGINT"),
        ("reported_at", "TIMESTAMPTZ"),
        ("verification_status", "VARCHAR"),
    ],
}
META = [
    ("_ds", "DATE"),
    ("_file", "VARCHAR"),
    ("_line", "BIGINT"),
    ("_extra", "VARCHAR"),
    ("_landed_at", "TIMESTAMPTZ"),
]


def _literal(value, sql_type: str) -> str:
    if value is None:
        return f"CAST(NULL AS {sql_type})"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"CAST('{value}' AS {sql_type})"
    return "CAST('" + str(value).replace("'", "''") + f"' AS {sql_type})"


def write_partition(
    raw: Path,
    source: str,
    ds: str,
    rows: list[dict],
    landed_at: str | None = None,
    touches_from: str | None = None,
    file_name: str = "rows.parquet",
    first_line: int = 2,
) -> Path:
    """Replace raw/<source>/ds=<ds>/ with `rows` (dicts of contract columns), the
    first on CSV record `first_line` (the header is record 1)."""
    folder = raw / source / f"ds={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    old_record = folder / "_reconciliation.json"
    old_touch = json.loads(old_record.read_text()).get("touches_from") if old_record.exists() else None
    for old in folder.glob("*"):
        old.unlink()
    # a new landing is a new version of the partition, as with landing.land
    landed_at = landed_at or dt.datetime.now(dt.UTC).isoformat()
    cols = COLUMNS[source] + META
    data_file = f"{source}/ds={ds}/{source}.csv"
    selects = []
    for line, row in enumerate(rows, start=first_line):
        values = dict(row)
        values.update(_ds=ds, _file=data_file, _line=line, _extra=None, _landed_at=landed_at)
        selects.append("SELECT " + ", ".join(f"{_literal(values.get(name), t)} AS {name}" for name, t in cols))
    if not selects:  # an empty delivery still has a typed, empty file
        selects.append("SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {name}" for name, t in cols) + " WHERE false")
    target = folder / file_name
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({' UNION ALL '.join(selects)}) TO '{target}' (FORMAT parquet)")
    finally:
        con.close()
    # as landing records it (docs/landing.md): the earliest date this delivery and
    # the one it replaces can touch, UTC dates minus a day of margin
    dates = [old_touch] if old_touch else []
    for row in rows:
        if source == "credit_events":
            dates.append(
                (
                    dt.datetime.fromisoformat(row["event_at"]).astimezone(dt.UTC).date() - dt.timedelta(days=1)
                ).isoformat()
            )
        elif source == "merchants":
            upd = dt.datetime.fromisoformat(row["updated_at"]).astimezone(dt.UTC).date()
            dates.append((min(upd, dt.date.fromisoformat(row["enrolled_on"])) - dt.timedelta(days=1)).isoformat())
        else:
            dates.append(row["period_month"])
    touched = touches_from or (min(dates) if dates else None)
    record = {
        "source": source,
        "ds": ds,
        "file": data_file,
        "sha256": "0" * 64,
        "control_row_count": len(rows),
        "delivered": len(rows),
        "loaded": len(rows),
        "quarantined": 0,
        "held": 0,
        "quarantine_by_rule": {},
        "extra_columns": [],
        "landed_at": landed_at,
        "touches_from": touched,
    }
    (folder / "_reconciliation.json").write_text(json.dumps(record))
    return folder


def release_orphans_into(
    raw,
    ds: str,
    run_ds: str,
    rows: list[dict],
    source: str = "credit_events",
    touches_from: str = "2020-04-18",
    first_line: int | None = None,
) -> None:
    """What landing.release_orphans leaves: released-<run ds>.parquet next to rows.parquet
    in the orphans' own partition, and the record updated (releases, touches_from).
    The released rows keep their own records of the delivery's file: from
    `first_line`, by default after those loaded (no two rows of a partition may
    share a (_ds, _line), which orders an event's or a report's copies)."""
    folder = raw / source / f"ds={ds}"
    record = json.loads((folder / "_reconciliation.json").read_text())
    scratch = raw.parent / "scratch"
    at = dt.datetime.now(dt.UTC).isoformat()  # the released rows' _landed_at
    if first_line is None:
        con = duckdb.connect()
        try:
            first_line = (
                con.execute(f"SELECT max(_line) FROM read_parquet('{folder}/*.parquet')").fetchone()[0] or 1
            ) + 1
        finally:
            con.close()
    write_partition(
        scratch,
        source,
        ds,
        rows,
        landed_at=at,
        file_name=f"released-{run_ds}.parquet",
        first_line=first_line,
    )
    shutil.copy(scratch / source / f"ds={ds}" / f"released-{run_ds}.parquet", folder)
    shutil.rmtree(scratch)
    record["loaded"] += len(rows)
    record.setdefault("releases", []).append(
        {"ds": run_ds, "released": len(rows), "at": at, "touches_from": touches_from}
    )
    record["touches_from"] = min(record.get("touches_from") or touches_from, touches_from)
    (folder / "_reconciliation.json").write_text(json.dumps(record))


def expire_orphans_of(raw, ds: str, run_ds: str) -> None:
    """What release_orphans records when a partition's held orphans expire: a
    release that released no row (they are quarantined); its raw rows are unchanged."""
    path = raw / "credit_events" / f"ds={ds}" / "_reconciliation.json"
    record = json.loads(path.read_text())
    record["quarantined"] += 1
    record.setdefault("releases", []).append(
        {"ds": run_ds, "released": 0, "quarantined": 1, "at": dt.datetime.now(dt.UTC).isoformat(), "touches_from": None}
    )
    path.write_text(json.dumps(record))


def days(start: str, n: int) -> list[str]:
    first = dt.date.fromisoformat(start)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(n)]


# --------------------------------------------------------------------------
# The hand-made data set of test_warehouse.py (SPARK-2020, CNY, Asia/Shanghai,
# deliveries 2020-04-15 .. 2020-04-24, around the LPR change of 2020-04-20).

FIRST_DS, LAST_DS = "2020-04-15", "2020-04-24"


def merchant_row(mid, region, btype, size, enrolled, status, updated_at):
    return dict(
        merchant_id=mid,
        program_code="SPARK-2020",
        business_name=f"店 {mid}",
        region=region,
        city="Shenzhen",
        business_type=btype,
        size_class=size,
        registered_on=None,
        enrolled_on=enrolled,
        status=status,
        updated_at=updated_at,
    )


def event_row(eid, line, mid, etype, at, amount, rate=None, due=None):
    return dict(
        event_id=eid,
        credit_line_id=line,
        merchant_id=mid,
        event_type=etype,
        event_at=at,
        amount=amount,
        currency="CNY",
        annual_interest_rate=rate,
        due_on=due,
        goods_category="food" if etype == "drawdown" else None,
    )


def _r(rid, mid, month, employees, baseline, at):
    return dict(
        report_id=rid,
        merchant_id=mid,
        period_month=month,
        employees=employees,
        baseline_employees=baseline,
        reported_at=at,
        verification_status="self_reported",
    )


def small_set() -> dict[str, dict[str, list[dict]]]:
    """source -> ds -> rows. Merchants A (pilot enrolled 2020-01-10; moves CN-GD -> CN-ZJ
    at 00:30 local on 04-18, i.e. 16:30 UTC on 04-17), B (enrolled 2020-01-15, first
    written on 04-15 already exited), C (enrols 04-16, exits 04-22)."""
    m = {
        "2020-04-15": [
            merchant_row("A", "CN-GD", "grocery", "micro", "2020-01-10", "active", "2020-04-15T09:00:00+08:00"),
            merchant_row("B", "CN-GD", "grocery", "micro", "2020-01-15", "exited", "2020-04-15T09:00:00+08:00"),
        ],
        "2020-04-16": [
            merchant_row("C", "CN-BJ", "street_stall", "small", "2020-04-16", "active", "2020-04-16T10:00:00+08:00")
        ],
        "2020-04-18": [
            merchant_row("A", "CN-ZJ", "grocery", "micro", "2020-01-10", "active", "2020-04-17T16:30:00+00:00")
        ],
        "2020-04-22": [
            merchant_row("C", "CN-BJ", "street_stall", "small", "2020-04-16", "exited", "2020-04-22T10:00:00+08:00")
        ],
    }
    e = {
        "2020-04-15": [
            event_row("e101", "L1", "A", "line_opened", "2020-03-01T10:00:00+08:00", "10000.00", rate="0"),
            event_row("e102", "L1", "A", "drawdown", "2020-03-10T12:00:00+08:00", "2000.00", due="2020-03-20"),
            event_row("e201", "L2", "B", "line_opened", "2020-03-05T10:00:00+08:00", "5000.00", rate="0.010000"),
            event_row("e202", "L2", "B", "drawdown", "2020-04-15T10:00:00+08:00", "1000.00", due="2020-05-15"),
        ],
        "2020-04-16": [
            event_row("e103", "L1", "A", "repayment", "2020-04-16T09:00:00+08:00", "500.00"),
            event_row("e301", "L3", "C", "line_opened", "2020-04-16T11:00:00+08:00", "3000.00", rate="0"),
        ],
        "2020-04-17": [
            event_row("e105", "L1", "A", "limit_changed", "2020-04-17T09:00:00+08:00", "12000.00"),
            event_row("e302", "L3", "C", "drawdown", "2020-04-17T11:00:00+08:00", "800.00", due="2020-05-17"),
        ],
        # a harmless duplicate of e302, and a late posting of a 04-16 drawdown
        "2020-04-18": [
            event_row("e302", "L3", "C", "drawdown", "2020-04-17T11:00:00+08:00", "800.00", due="2020-05-17")
        ],
        "2020-04-19": [
            event_row("e104", "L1", "A", "drawdown", "2020-04-16T14:00:00+08:00", "1000.00", due="2020-05-16")
        ],
        # 16:30 UTC on 04-19 is 00:30 on 04-20 in Shanghai
        "2020-04-20": [
            event_row("e106", "L1", "A", "drawdown", "2020-04-19T16:30:00+00:00", "300.00", due="2020-05-20")
        ],
        # an id with a quote: staging writes re-read ids into its SQL as literals
        "2020-04-21": [event_row("e3'03", "L3", "C", "repayment", "2020-04-21T11:00:00+08:00", "800.00")],
        "2020-04-22": [event_row("e107", "L1", "A", "written_off", "2020-04-22T11:00:00+08:00", "200.00")],
        "2020-04-23": [event_row("e203", "L2", "B", "line_closed", "2020-04-23T10:00:00+08:00", "0.00")],
    }
    r = {
        "2020-04-15": [_r("r1", "A", "2020-03-01", 8, 10, "2020-04-15T10:00:00+08:00")],
        "2020-04-16": [
            _r("r2", "A", "2020-04-01", 9, 10, "2020-04-16T10:00:00+08:00"),
            _r("r4", "C", "2020-04-01", 3, 3, "2020-04-16T10:00:00+08:00"),
        ],
        # A corrects April
        "2020-04-20": [_r("r3", "A", "2020-04-01", 12, 10, "2020-04-20T10:00:00+08:00")],
    }
    return {"merchants": m, "credit_events": e, "employment_reports": r}


def write_nights(raw: Path, data: dict, through: str, since: str = FIRST_DS) -> None:
    """Land every source's delivery for each ds in [since, through] (empty ones too)."""
    for ds in days(since, (dt.date.fromisoformat(through) - dt.date.fromisoformat(since)).days + 1):
        for source in ("merchants", "credit_events", "employment_reports"):
            write_partition(raw, source, ds, data[source].get(ds, []))


def age_landings(raw: Path, source: str, hours: float) -> None:
    """Make every row of a landed source look landed `hours` ago, as if no night
    had landed anything of it since: what `dbt source freshness` measures is the
    newest `_landed_at` of the whole source."""
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).isoformat()
    con = duckdb.connect()
    try:
        for f in sorted((raw / source).glob("ds=*/*.parquet")):
            tmp = f.with_name(f.name + ".aged")
            con.execute(
                f"COPY (SELECT * REPLACE (TIMESTAMPTZ '{at}' AS _landed_at) FROM read_parquet('{f}')) "
                f"TO '{tmp}' (FORMAT parquet)"
            )
            tmp.replace(f)
    finally:
        con.close()


# every table a night restates in place, and the published marts: what an incremental
# night must leave equal to a full refresh
RESTATED_TABLES = (
    "kpi_program_daily",
    "kpi_segment_daily",
    "kpi_target_progress",
    "fct_credit_segment_changes",
    "fct_merchant_segment_changes",
    "fct_segment_daily",
    "int_credit_line_states",
    "stg_credit_events",
    "stg_employment_reports",
    "int_employment_reports_effective",
)
