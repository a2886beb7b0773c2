"""Landed partitions as landing leaves them (rows.parquet, then _reconciliation.json), for the
gates' tests: a small clean delivery of each source, with the counts a test asks for."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

DS = "2020-06-03"

SQL = {
    "merchants": """SELECT 'M' || i AS merchant_id, 'SPARK-2020' AS program_code, 'Shop ' || i AS business_name,
        'CN-GD' AS region, 'Shenzhen' AS city, 'grocery' AS business_type, 'micro' AS size_class,
        DATE '2019-01-01' AS registered_on, DATE '2020-06-01' AS enrolled_on, 'active' AS status,
        TIMESTAMPTZ '2020-06-03 10:00:00+08' AS updated_at""",
    "credit_events": """SELECT 'E' || i AS event_id, 'L' || i AS credit_line_id, 'M' || i AS merchant_id,
        CASE WHEN i % 2 = 0 THEN 'line_opened' ELSE 'drawdown' END AS event_type,
        TIMESTAMPTZ '2020-06-03 10:00:00+08' AS event_at, CAST(100 + i AS DECIMAL(14,2)) AS amount, 'CNY' AS currency,
        CASE WHEN i % 2 = 0 THEN CAST(0 AS DECIMAL(12,6)) END AS annual_interest_rate,
        CASE WHEN i % 2 = 1 THEN DATE '2020-07-03' END AS due_on,
        CASE WHEN i % 2 = 1 THEN 'food' END AS goods_category""",
    "employment_reports": """SELECT 'R' || i AS report_id, 'M' || i AS merchant_id, DATE '2020-06-01' AS period_month,
        CAST(5 AS BIGINT) AS employees, CAST(6 AS BIGINT) AS baseline_employees,
        TIMESTAMPTZ '2020-06-03 10:00:00+08' AS reported_at, 'verified' AS verification_status""",
}


def land(
    home: Path,
    source: str,
    ds: str = DS,
    rows: int = 10,
    quarantined: int = 0,
    held: int = 0,
    extra_sql: str = "",
    record_overrides: dict | None = None,
) -> Path:
    """A landed partition as landing leaves it: rows.parquet, then _reconciliation.json."""
    part = home / "raw" / source / f"ds={ds}"
    part.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT *, DATE '{ds}' AS _ds, '{source}/ds={ds}/{source}.csv' AS _file, i + 1 AS _line,
                    NULL::VARCHAR AS _extra, now() AS _landed_at
                    FROM ({SQL[source]}, i FROM range(1, {rows} + 1) t(i)) {extra_sql})
                    TO '{part / "rows.parquet"}' (FORMAT parquet)""")
    con.close()
    delivered = rows + quarantined + held
    record = {
        "source": source,
        "ds": ds,
        "file": f"{source}/ds={ds}/{source}.csv",
        "sha256": "ab" * 32,
        "control_row_count": delivered,
        "delivered": delivered,
        "loaded": rows,
        "quarantined": quarantined,
        "held": held,
        "quarantine_by_rule": {"amount_negative": quarantined} if quarantined else {},
        "extra_columns": [],
        "landed_at": "2020-06-03T23:00:00+00:00",
    }
    record.update(record_overrides or {})
    (part / "_reconciliation.json").write_text(json.dumps(record))
    return part


def land_all(home: Path, ds: str = DS, **kwargs) -> None:
    for source in SQL:
        land(home, source, ds, **kwargs)
