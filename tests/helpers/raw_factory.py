"""Random raw layers, written straight in the format of docs/architecture.md.

Small and adversarial on purpose: merchant versions that move region and
change status on the same day, pilots enrolled before their first version,
late postings, events near local midnight, drawdowns with out-of-order due
dates, partial repayments, write-offs, closed lines, limit changes,
employment corrections. Used to compare independent readings of kpis.md
(the dbt marts, the SQL floor, the Python oracle) with each other."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.UTC
CN = dt.timezone(dt.timedelta(hours=8))

MERCHANT_SCHEMA = pa.schema(
    [
        ("merchant_id", pa.string()),
        ("program_code", pa.string()),
        ("business_name", pa.string()),
        ("region", pa.string()),
        ("city", pa.string()),
        ("business_type", pa.string()),
        ("size_class", pa.string()),
        ("registered_on", pa.date32()),
        ("enrolled_on", pa.date32()),
        ("status", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("credit_line_id", pa.string()),
        ("merchant_id", pa.string()),
        ("event_type", pa.string()),
        ("event_at", pa.timestamp("us", tz="UTC")),
        ("amount", pa.decimal128(14, 2)),
        ("currency", pa.string()),
        ("annual_interest_rate", pa.decimal128(12, 6)),
        ("due_on", pa.date32()),
        ("goods_category", pa.string()),
    ]
)
REPORT_SCHEMA = pa.schema(
    [
        ("report_id", pa.string()),
        ("merchant_id", pa.string()),
        ("period_month", pa.date32()),
        ("employees", pa.int64()),
        ("baseline_employees", pa.int64()),
        ("reported_at", pa.timestamp("us", tz="UTC")),
        ("verification_status", pa.string()),
    ]
)
META = [
    ("_ds", pa.date32()),
    ("_file", pa.string()),
    ("_line", pa.int64()),
    ("_extra", pa.string()),
    ("_landed_at", pa.timestamp("us", tz="UTC")),
]


def _write(home: Path, source: str, schema: pa.Schema, rows_by_ds: dict[dt.date, list[dict]]) -> None:
    full = pa.schema(list(schema) + [pa.field(n, t) for n, t in META])
    for ds, rows in rows_by_ds.items():
        out = home / "raw" / source / f"ds={ds.isoformat()}"
        out.mkdir(parents=True, exist_ok=True)
        for i, r in enumerate(rows):
            r.update(
                _ds=ds,
                _file=f"{source}/ds={ds}/{source}.csv",
                _line=i + 2,
                _extra=None,
                _landed_at=dt.datetime.combine(ds, dt.time(23), UTC),
            )
        pq.write_table(pa.Table.from_pylist(rows, schema=full), out / "rows.parquet")


def make_raw(
    home: Path,
    seed: int = 7,
    merchants: int = 40,
    start: dt.date = dt.date(2020, 4, 10),
    days: int = 20,
    program: str = "SPARK-2020",
) -> dt.date:
    """Writes a raw layer under home/raw; returns the latest ds."""
    rnd = random.Random(seed)
    regions = ["CN-GD", "CN-ZJ", "CN-SH"]
    types = ["grocery", "street_stall"]
    sizes = ["micro", "small"]
    m_rows: dict[dt.date, list[dict]] = {}
    e_rows: dict[dt.date, list[dict]] = {}
    r_rows: dict[dt.date, list[dict]] = {}
    end = start + dt.timedelta(days=days - 1)

    def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, minute), CN).astimezone(UTC)

    for i in range(merchants):
        mid = f"M{i:04d}"
        enrolled = start + dt.timedelta(days=rnd.randint(-150, days - 3))  # some pilots long before
        first_ds = max(start, enrolled)
        version = dict(
            merchant_id=mid,
            program_code=program,
            business_name=f"店{i}",
            region=rnd.choice(regions),
            city="city",
            business_type=rnd.choice(types),
            size_class=rnd.choice(sizes),
            registered_on=None,
            enrolled_on=enrolled,
            status="active",
            updated_at=at(first_ds, rnd.choice([0, 9, 23]), rnd.choice([0, 30, 59])),
        )
        m_rows.setdefault(first_ds, []).append(dict(version))
        # later versions: moves, status changes, two on one day
        for _ in range(rnd.choice([0, 0, 1, 2])):
            day = first_ds + dt.timedelta(days=rnd.randint(0, (end - first_ds).days))
            v = dict(version)
            v.update(
                region=rnd.choice(regions),
                status=rnd.choice(["active", "suspended", "exited"]),
                updated_at=at(day, rnd.randint(0, 23), rnd.randint(0, 59)),
            )
            if v["updated_at"] <= version["updated_at"]:
                continue
            m_rows.setdefault(day, []).append(v)
            version = v
        # credit lines
        if rnd.random() < 0.8:
            lid = f"L{i:04d}"
            n = 0
            opened = first_ds
            rate = rnd.choice([Decimal("0"), Decimal("0"), Decimal("0.01")])
            evs = [("line_opened", opened, Decimal(rnd.choice([50000, 100000])), rate, None)]
            for _ in range(rnd.randint(0, 6)):
                day = opened + dt.timedelta(days=rnd.randint(0, max(0, (end - opened).days)))
                kind = rnd.choice(["drawdown", "drawdown", "repayment", "limit_changed", "written_off"])
                amount = Decimal(rnd.randint(100, 900000)) / 100
                due = day + dt.timedelta(days=rnd.choice([1, 3, 5, 40])) if kind == "drawdown" else None
                evs.append((kind, day, amount, None, due))
            if rnd.random() < 0.15:
                evs.append(("line_closed", end - dt.timedelta(days=rnd.randint(0, 3)), Decimal("0"), None, None))
            for kind, day, amount, r, due in evs:
                n += 1
                # posted on event day, or up to 5 days late
                ds = min(end, day + dt.timedelta(days=rnd.choice([0, 0, 0, 1, 5])))
                ds = max(ds, first_ds)
                hour, minute = rnd.choice([(0, 5), (7, 59), (8, 0), (12, 0), (23, 59)])
                e_rows.setdefault(ds, []).append(
                    dict(
                        event_id=f"E{i:04d}-{n}",
                        credit_line_id=lid,
                        merchant_id=mid,
                        event_type=kind,
                        event_at=at(day, hour, minute),
                        amount=amount,
                        currency="CNY",
                        annual_interest_rate=r if kind == "line_opened" else None,
                        due_on=due,
                        goods_category="food" if kind == "drawdown" else None,
                    )
                )
        # employment reports, with a correction
        if rnd.random() < 0.7:
            base = rnd.randint(1, 20)
            for k, month in enumerate(sorted({dt.date(2020, 3, 1), start.replace(day=1)})):
                ds = max(first_ds, start + dt.timedelta(days=rnd.randint(0, days - 1)))
                r_rows.setdefault(ds, []).append(
                    dict(
                        report_id=f"R{i:04d}-{k}",
                        merchant_id=mid,
                        period_month=month,
                        employees=rnd.randint(0, 25),
                        baseline_employees=base,
                        reported_at=at(ds, 10),
                        verification_status="self_reported",
                    )
                )
                if rnd.random() < 0.3:
                    r_rows.setdefault(ds, []).append(
                        dict(
                            report_id=f"R{i:04d}-{k}c",
                            merchant_id=mid,
                            period_month=month,
                            employees=rnd.randint(0, 25),
                            baseline_employees=base,
                            reported_at=at(ds, 11),
                            verification_status="verified",
                        )
                    )
    for rows in (m_rows, e_rows, r_rows):
        rows.setdefault(end, [])
    _write(home, "merchants", MERCHANT_SCHEMA, m_rows)
    _write(home, "credit_events", EVENT_SCHEMA, e_rows)
    _write(home, "employment_reports", REPORT_SCHEMA, r_rows)
    return end


# the id columns of each source: a second program's rows get a prefix on each, so that the
# programs' raw layers can share one home
_IDS = {
    "merchants": ("merchant_id",),
    "credit_events": ("event_id", "credit_line_id", "merchant_id"),
    "employment_reports": ("report_id", "merchant_id"),
}


def make_raw_programs(
    home: Path, programs: dict[str, dict], start: dt.date = dt.date(2020, 4, 10), days: int = 20
) -> dt.date:
    """Writes one raw layer under home/raw holding several programs: make_raw's layer for each
    (programs: program_code -> make_raw's seed and merchants), its ids prefixed with the
    program's first letters so that they never collide, the same business dates for all.
    Returns the latest ds."""
    parts = home / "raw_parts"
    last = start
    for program, kwargs in programs.items():
        last = make_raw(parts / program, start=start, days=days, program=program, **kwargs)
    con = duckdb.connect()
    try:
        for source, ids in _IDS.items():
            folders = sorted({p.name for program in programs for p in (parts / program / "raw" / source).iterdir()})
            for folder in folders:
                selects = []
                for program in programs:
                    part = parts / program / "raw" / source / folder / "rows.parquet"
                    if part.exists():
                        prefix = "".join(w[0] for w in program.split("-")[:-1])
                        renamed = ", ".join(f"'{prefix}-' || {c} AS {c}" for c in ids)
                        selects.append(f"SELECT * REPLACE ({renamed}) FROM read_parquet('{part}')")
                out = home / "raw" / source / folder
                out.mkdir(parents=True, exist_ok=True)
                # one file, lines renumbered: _line stays unique within the partition
                con.execute(
                    f"COPY (SELECT * REPLACE (CAST(row_number() OVER () + 1 AS BIGINT) AS _line) "
                    f"FROM ({' UNION ALL '.join(selects)})) TO '{out / 'rows.parquet'}' (FORMAT parquet)"
                )
    finally:
        con.close()
    shutil.rmtree(parts)
    return last


def table_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    rel = con.sql(sql)
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]
