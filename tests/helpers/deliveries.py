"""Write source deliveries (CSV + a correct _control.json) into a drop folder,
as extracts.md defines them. Tests build bad deliveries by overriding rows,
bytes or control keys."""

from __future__ import annotations

import csv
import decimal
import gzip
import hashlib
import io
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from program_reporting.core import contract

GOOD = {
    "merchants": {
        "merchant_id": "M1",
        "program_code": "SPARK-2020",
        "business_name": "Zhang's Corner Shop",
        "owner_name": "Zhang San",
        "owner_phone": "+86 138 0000 0000",
        "owner_national_id": "110101199001011234",
        "region": "CN-GD",
        "city": "Guangzhou",
        "business_type": "convenience_store",
        "size_class": "micro",
        "registered_on": "2019-01-15",
        "enrolled_on": "2020-06-02",
        "status": "active",
        "updated_at": "2020-06-02T09:15:00+08:00",
    },
    "credit_events": {
        "event_id": "E1",
        "credit_line_id": "L1",
        "merchant_id": "M1",
        "event_type": "drawdown",
        "event_at": "2020-06-02T10:00:00+08:00",
        "amount": "1200.50",
        "currency": "CNY",
        "annual_interest_rate": "",
        "due_on": "2020-07-02",
        "goods_category": "food",
    },
    "employment_reports": {
        "report_id": "R1",
        "merchant_id": "M1",
        "period_month": "2020-06",
        "employees": "4",
        "baseline_employees": "5",
        "reported_at": "2020-06-02T18:00:00+08:00",
        "verification_status": "verified",
    },
}


def row(source: str, n: int | None = None, **overrides) -> dict:
    """A valid row of `source`; n makes its ids unique (M<n>, E<n>, R<n>)."""
    r = dict(GOOD[source])
    if n is not None:
        for key, prefix in (("merchant_id", "M"), ("event_id", "E"), ("report_id", "R"), ("credit_line_id", "L")):
            if key in r and not (key == "merchant_id" and source != "merchants"):
                r[key] = f"{prefix}{n}"
    r.update(overrides)
    return r


def csv_text(rows: list[dict], columns: list[str], newline: str = "\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c, "") for c in columns])
    return buf.getvalue()


def amount_total(rows: list[dict]) -> str:
    """The exact sum, as a source computes it (the default context would round at 28 digits)."""
    with decimal.localcontext(decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX)):
        total = Decimal(0)
        for r in rows:
            try:
                total += Decimal(r.get("amount") or "0")
            except InvalidOperation:
                pass
        return f"{total:.2f}"


def write_delivery(
    drop: Path,
    source: str,
    ds: str,
    rows: list[dict] | None = None,
    *,
    columns: list[str] | None = None,
    gz: bool = False,
    bom: bool = False,
    crlf: bool = False,
    data: bytes | None = None,
    row_count: int | None = None,
    control: dict | None = None,
    control_text: str | None = None,
    write_control: bool = True,
) -> Path:
    """Write drop/<source>/ds=<ds>/<source>.csv[.gz] and a correct _control.json.

    data: the file's text bytes as-is (before gzip) instead of rows;
    control: keys overriding the computed control file (None values delete a key);
    control_text: the control file's exact text. Returns the delivery folder."""
    folder = drop / source / f"ds={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    rows = rows or []
    columns = columns or contract.column_names(source)
    if data is None:
        data = csv_text(rows, columns, "\r\n" if crlf else "\n").encode("utf-8")
    if bom:
        data = b"\xef\xbb\xbf" + data
    payload = gzip.compress(data) if gz else data
    path = folder / contract.data_file_name(source, gz)
    path.write_bytes(payload)
    ctl = {
        "source": source,
        "ds": ds,
        "schema_version": "1",
        "row_count": len(rows) if row_count is None else row_count,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "produced_at": f"{ds}T23:30:00+08:00",
    }
    if source == "credit_events":
        ctl["amount_total"] = amount_total(rows)
    for k, v in (control or {}).items():
        if v is None:
            ctl.pop(k, None)
        else:
            ctl[k] = v
    if write_control:
        (folder / contract.CONTROL_FILE).write_text(
            control_text if control_text is not None else json.dumps(ctl), encoding="utf-8"
        )
    return folder


# --------------------------------------------------------------------------- at scale

GENERATED_ROWS = {
    # Selected from range(n) t(i) by DuckDB, every field as the text a source would write.
    "merchants": """SELECT 'M' || i AS merchant_id, 'SPARK-2020' AS program_code, 'Shop ' || i AS business_name,
        'Owner ' || i AS owner_name, '+86 138 0000 0000' AS owner_phone, '' AS owner_national_id, 'CN-GD' AS region,
        'Guangzhou' AS city, 'grocery' AS business_type, 'micro' AS size_class, '2019-01-15' AS registered_on,
        '2020-01-02' AS enrolled_on, 'active' AS status, '2020-01-02T09:00:00+08:00' AS updated_at""",
    "credit_events": """SELECT 'E' || i AS event_id, 'L' || (i // 3) AS credit_line_id,
        'M' || (i % {merchants}) AS merchant_id,
        ['line_opened', 'drawdown', 'repayment'][i % 3 + 1] AS event_type, '{ds}T10:00:00+08:00' AS event_at,
        CAST(CAST((i % 100000) / 100 AS DECIMAL(14,2)) AS VARCHAR) AS amount, 'CNY' AS currency,
        CASE WHEN i % 3 = 0 THEN '0.050000' ELSE '' END AS annual_interest_rate,
        CASE WHEN i % 3 = 1 THEN CAST(DATE '{ds}' + 30 AS VARCHAR) ELSE '' END AS due_on,
        CASE WHEN i % 3 = 1 THEN 'food' ELSE '' END AS goods_category""",
    "employment_reports": """SELECT 'R' || i AS report_id, 'M' || (i % {merchants}) AS merchant_id,
        '2020-05' AS period_month,
        CAST(i % 20 AS VARCHAR) AS employees, '10' AS baseline_employees,
        '{ds}T18:00:00+08:00' AS reported_at, 'verified' AS verification_status""",
}


def write_generated_delivery(drop: Path, source: str, ds: str, rows: int, merchants: int = 1000) -> Path:
    """A delivery of `rows` valid rows written by DuckDB (fast enough for millions),
    with a correct control file computed from the file written. Credit events and
    reports belong to merchants M0 .. M<merchants - 1>."""
    import duckdb

    from program_reporting.core.checksums import sha256_file

    folder = drop / source / f"ds={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    path = folder / contract.data_file_name(source)
    select = GENERATED_ROWS[source].format(ds=ds, merchants=merchants)
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({select} FROM range({rows}) t(i)) TO '{path}' (HEADER, DELIMITER ',')")
        total = None
        if source == "credit_events":
            total = con.execute(
                f"SELECT coalesce(sum(CAST(amount AS DECIMAL(18,2))), 0) FROM read_csv('{path}', all_varchar = true)"
            ).fetchone()[0]
    finally:
        con.close()
    ctl = {
        "source": source,
        "ds": ds,
        "schema_version": "1",
        "row_count": rows,
        "sha256": sha256_file(path),
        "produced_at": f"{ds}T23:30:00+08:00",
    }
    if total is not None:
        ctl["amount_total"] = f"{total:.2f}"
    (folder / contract.CONTROL_FILE).write_text(json.dumps(ctl), encoding="utf-8")
    return folder
