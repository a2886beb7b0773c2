"""The landed gate: per-source GX suites on raw/<source>/ds=<ds>/ and the
reconciliation records, written here in the format of docs/architecture.md."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from program_reporting import gate

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


def land(home: Path, source: str, ds: str = DS, rows: int = 10, quarantined: int = 0, held: int = 0,
         extra_sql: str = "", record_overrides: dict | None = None) -> Path:
    """A landed partition as landing leaves it: rows.parquet, then _reconciliation.json."""
    part = home / "raw" / source / f"ds={ds}"
    part.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT *, DATE '{ds}' AS _ds, '{source}/ds={ds}/{source}.csv' AS _file, i + 1 AS _line,
                    NULL::VARCHAR AS _extra, now() AS _landed_at
                    FROM ({SQL[source]}, i FROM range(1, {rows} + 1) t(i)) {extra_sql})
                    TO '{part / 'rows.parquet'}' (FORMAT parquet)""")
    con.close()
    delivered = rows + quarantined + held
    record = {"source": source, "ds": ds, "file": f"{source}/ds={ds}/{source}.csv", "sha256": "ab" * 32,
              "control_row_count": delivered, "delivered": delivered, "loaded": rows, "quarantined": quarantined,
              "held": held, "quarantine_by_rule": {"amount_negative": quarantined} if quarantined else {},
              "extra_columns": [], "landed_at": "2020-06-03T23:00:00+00:00"}
    record.update(record_overrides or {})
    (part / "_reconciliation.json").write_text(json.dumps(record))
    return part


def land_all(home: Path, ds: str = DS, **kwargs) -> None:
    for source in SQL:
        land(home, source, ds, **kwargs)


def _by_id(result):
    return {r.check_id: r for r in result.results}


def test_clean_deliveries_pass(env_paths):
    land_all(env_paths.home, quarantined=0, held=0)
    land(env_paths.home, "credit_events", rows=10, quarantined=1, held=2)  # replaces: counts still reconcile
    result = gate.validate_landed(DS, env_paths)
    assert result.passed, result.summary()
    ids = _by_id(result)
    assert ids["c_reconciles"].status == "passed"
    assert ids["c_loaded_rows_present"].status == "passed"
    assert ids["m_merchant_id_unique"].status == "passed"
    assert all(r.evaluated for r in result.results)


def test_counts_that_do_not_reconcile_block(env_paths):
    land_all(env_paths.home)
    land(env_paths.home, "merchants", record_overrides={"delivered": 12, "control_row_count": 12})  # 2 rows vanished
    land(env_paths.home, "employment_reports", record_overrides={"control_row_count": 11})
    result = gate.validate_landed(DS, env_paths)
    assert {r.check_id for r in result.blocking} == {"m_reconciles", "e_control_count"}


def test_loaded_rows_missing_from_the_partition_block(env_paths):
    land_all(env_paths.home)
    land(env_paths.home, "credit_events", record_overrides={"loaded": 11, "delivered": 11, "control_row_count": 11})
    result = gate.validate_landed(DS, env_paths)
    assert [r.check_id for r in result.blocking] == ["c_loaded_rows_present"]


def test_an_identical_repeat_is_one_event(env_paths):
    """extracts.md: an identical repeat of an event loads (dbt counts it once), so the
    raw partition may hold it twice; only different events sharing an id break uniqueness."""
    land_all(env_paths.home)
    land(env_paths.home, "credit_events", extra_sql=f"UNION ALL SELECT *, DATE '{DS}', 'x', 99, NULL, now() "
                   f"FROM ({SQL['credit_events']}, i FROM range(1, 2) t(i))",
         record_overrides={"delivered": 11, "loaded": 11, "control_row_count": 11})
    result = gate.validate_landed(DS, env_paths)
    assert result.passed, [r.check_id for r in result.blocking]
    assert _by_id(result)["c_event_id_unique"].status == "passed"


def test_bad_rows_block(env_paths):
    land_all(env_paths.home)
    land(env_paths.home, "credit_events",
         extra_sql="UNION ALL SELECT 'E1', 'L1', 'M1', 'repayment', now(), -5, 'CNY', NULL, NULL, NULL, 99, "
                   "DATE '2020-06-03', 'x', 100, NULL, now()",
         record_overrides={"delivered": 11, "loaded": 11, "control_row_count": 11})
    result = gate.validate_landed(DS, env_paths)
    assert {r.check_id for r in result.blocking} == {"c_event_id_unique", "c_amount_not_negative"}
    sample = _by_id(result)["c_amount_not_negative"].failing_rows
    assert sample and sample[0]["event_id"] == "E1"


def test_a_source_that_did_not_land_is_not_evaluated_and_blocks(env_paths):
    land(env_paths.home, "merchants")
    land(env_paths.home, "credit_events")
    result = gate.validate_landed(DS, env_paths)
    ids = _by_id(result)
    assert ids["e_delivery_landed"].blocking
    assert ids["e_report_id_unique"].status == "not evaluated"  # no partition: nothing was checked
    assert not result.passed


def test_empty_delivery_skips_row_checks_but_still_reconciles(env_paths):
    land_all(env_paths.home)
    land(env_paths.home, "employment_reports", rows=0)
    result = gate.validate_landed(DS, env_paths)
    assert result.passed, result.summary()
    ids = _by_id(result)
    assert ids["e_report_id_unique"].status == "skipped"
    assert ids["e_reconciles"].status == "passed"


def test_empty_partition_with_loaded_rows_claimed_fails(env_paths):
    land_all(env_paths.home)
    land(env_paths.home, "employment_reports", rows=0,
         record_overrides={"loaded": 4, "delivered": 4, "control_row_count": 4})
    result = gate.validate_landed(DS, env_paths)
    ids = _by_id(result)
    assert ids["e_report_id_unique"].status == "not evaluated" and ids["e_report_id_unique"].blocking
    assert ids["e_loaded_rows_present"].status == "failed"


def test_pii_column_in_raw_layer_blocks(env_paths):
    land_all(env_paths.home)
    part = env_paths.home / "raw" / "merchants" / f"ds={DS}"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT *, '13812345678' AS owner_phone FROM '{part / 'rows.parquet'}') "
                f"TO '{part / 'rows2.parquet'}' (FORMAT parquet)")
    con.close()
    (part / "rows2.parquet").replace(part / "rows.parquet")
    result = gate.validate_landed(DS, env_paths)
    assert [r.check_id for r in result.blocking] == ["m_no_pii_column_names"]
    assert "13812345678" not in json.dumps(result.to_dict(), default=str)
