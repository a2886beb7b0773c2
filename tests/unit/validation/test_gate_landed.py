"""The landed gate: per-source GX suites on raw/<source>/ds=<ds>/ and the
reconciliation records, written here in the format of docs/architecture.md."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from helpers.landed import DS, SQL, land, land_all  # noqa: F401 - SQL for the tests below

from program_reporting.core.settings import EXPECTATIONS_DIR, REPO_ROOT
from program_reporting.reporting import report
from program_reporting.validation import gate
from program_reporting.validation.suites import SuiteError, load_suite


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
    land(
        env_paths.home,
        "credit_events",
        extra_sql=f"UNION ALL SELECT *, DATE '{DS}', 'x', 99, NULL, now() "
        f"FROM ({SQL['credit_events']}, i FROM range(1, 2) t(i))",
        record_overrides={"delivered": 11, "loaded": 11, "control_row_count": 11},
    )
    result = gate.validate_landed(DS, env_paths)
    assert result.passed, [r.check_id for r in result.blocking]
    assert _by_id(result)["c_event_id_unique"].status == "passed"


def test_bad_rows_block(env_paths):
    land_all(env_paths.home)
    land(
        env_paths.home,
        "credit_events",
        extra_sql="UNION ALL SELECT 'E1', 'L1', 'M1', 'repayment', now(), -5, 'CNY', NULL, NULL, NULL, 99, "
        "DATE '2020-06-03', 'x', 100, NULL, now()",
        record_overrides={"delivered": 11, "loaded": 11, "control_row_count": 11},
    )
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
    land(
        env_paths.home,
        "employment_reports",
        rows=0,
        record_overrides={"loaded": 4, "delivered": 4, "control_row_count": 4},
    )
    result = gate.validate_landed(DS, env_paths)
    ids = _by_id(result)
    assert ids["e_report_id_unique"].status == "not evaluated" and ids["e_report_id_unique"].blocking
    assert ids["e_loaded_rows_present"].status == "failed"


def test_pii_column_in_raw_layer_blocks(env_paths):
    land_all(env_paths.home)
    part = env_paths.home / "raw" / "merchants" / f"ds={DS}"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT *, '13812345678' AS owner_phone FROM '{part / 'rows.parquet'}') "
        f"TO '{part / 'rows2.parquet'}' (FORMAT parquet)"
    )
    con.close()
    (part / "rows2.parquet").replace(part / "rows.parquet")
    result = gate.validate_landed(DS, env_paths)
    assert [r.check_id for r in result.blocking] == ["m_no_pii_column_names"]
    assert "13812345678" not in json.dumps(result.to_dict(), default=str)


# --------------------------------------------------------------------------- batches


def _plant(source: str, rows: str, replace: str = "") -> str:
    """Rows of SQL[source] for i in `rows` (a range), columns replaced, as extra_sql of land()."""
    star = f"* REPLACE ({replace})" if replace else "*"
    return (
        f" UNION ALL SELECT {star}, DATE '{DS}', 'x', i + 1, NULL, now() "
        f"FROM ({SQL[source]}, i FROM range({rows}) t(i))"
    )


def _outcome(r) -> tuple:
    rows = [json.dumps(row, sort_keys=True, default=str) for row in r.failing_rows]
    if r.expectation_type == "expect_column_values_to_be_unique":
        # which rows of a key repeated beyond the sample are shown is arbitrary; their key is not
        rows = [row[r.column] for row in r.failing_rows]
    return r.suite, r.check_id, r.status, r.observed_value, r.note, sorted(rows)


def test_batches_give_exactly_the_outcome_of_the_whole_frame(env_paths, monkeypatch, caplog, tmp_path):
    """PROGRAM_REPORTING_GATE_BATCH_ROWS=100 on deliveries of about 3,000 rows: every
    check has the status, counts, sample values and failing rows of the frames
    validated whole, and every GX result still renders as Data Docs."""
    # Batches follow the key's order (DuckDB sorts text bytewise, as Python does). Cut
    # blindly every 100 rows, the repeat of `pair` (row 100) would fall in another batch
    # than its first row, and so would the first row of `many` (row 199, after pair's
    # repeat) from its 100 repeats; and 101 rows of one key cannot be in one batch: cut
    # at 100, one would be alone in its batch, no longer a duplicate.
    pair, many = sorted(f"E{i}" for i in range(1, 3001))[99:199:99]
    merchant_pair = sorted(f"M{i}" for i in range(1, 3001))[99]
    land(
        env_paths.home,
        "merchants",
        rows=3000,
        record_overrides={"loaded": 3002, "delivered": 3002, "control_row_count": 3002},
        extra_sql=_plant("merchants", "8000, 8001", f"'{merchant_pair}' AS merchant_id")  # another merchant
        + _plant("merchants", "8001, 8002", "'Shop 13812345678' AS business_name"),
    )
    land(
        env_paths.home,
        "credit_events",
        rows=3000,
        record_overrides={"loaded": 3106, "delivered": 3106, "control_row_count": 3106},
        extra_sql=_plant("credit_events", "6000, 6001", f"'{pair}' AS event_id")  # two events share it
        + _plant("credit_events", "5000, 5100", f"'{many}' AS event_id")  # 101 events share it
        + _plant("credit_events", "10, 11")  # an identical repeat of E10: one event
        + _plant("credit_events", "9999, 10000", "CAST(-5 AS DECIMAL(14,2)) AS amount")
        + _plant("credit_events", "7000, 7003", "NULL::VARCHAR AS event_id"),
    )
    land(
        env_paths.home,
        "employment_reports",
        rows=0,  # rows claimed, none in the partition
        record_overrides={"loaded": 4, "delivered": 4, "control_row_count": 4},
    )

    whole = gate.validate_landed(DS, env_paths)  # default batch size: every frame in one batch
    monkeypatch.setenv("PROGRAM_REPORTING_GATE_BATCH_ROWS", "100")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="program_reporting.validation.suites"):
        batched = gate.validate_landed(DS, env_paths)

    batches = {m[1]: int(m[2]) for m in re.finditer(r"(landed_\w+\.\w+): \d+ rows in (\d+) batches", caplog.text)}
    assert batches["landed_credit_events.rows"] >= 31
    assert batches["landed_merchants.rows"] >= 30 and batches["landed_merchants.text_values"] >= 30
    assert [_outcome(r) for r in batched.results] == [_outcome(r) for r in whole.results]

    ids = _by_id(batched)
    unique = ids["c_event_id_unique"]
    assert unique.status == "failed" and unique.observed_value["unexpected"] == 2 + 101
    assert unique.observed_value["sample_unexpected_values"] == [pair, pair, many, many, many]
    assert unique.observed_value["rows"] == 3000 + 100 + 1 + 1 + 3  # the identical repeat counted once
    assert ids["c_event_id_not_null"].observed_value["unexpected"] == 3
    negative = ids["c_amount_not_negative"]
    assert negative.observed_value["unexpected"] == 1 and negative.failing_rows[0]["event_id"] == "E9999"
    assert ids["m_merchant_id_unique"].observed_value["unexpected"] == 2
    assert ids["m_no_cn_mobile"].status == "failed" and not ids["m_no_cn_mobile"].blocking  # a warning
    assert ids["e_report_id_unique"].status == "not evaluated" and ids["e_report_id_unique"].blocking
    assert ids["c_currency_known"].status == ids["m_region_not_null"].status == "passed"
    assert {r.check_id for r in batched.blocking} == {
        "c_event_id_unique",
        "c_event_id_not_null",
        "c_amount_not_negative",
        "m_merchant_id_unique",
        "e_loaded_rows_present",
        *(r.check_id for r in batched.results if r.suite == "landed_employment_reports" and r.frame == "rows"),
    }

    # one GX result per frame, as for a frame validated whole, with the batches' counts added up
    names = [name for name, _ in batched.gx_results]
    assert names == [name for name, _ in whole.gx_results] and len(names) == len(set(names))
    gx_rows = dict(batched.gx_results)["landed_credit_events.rows"]
    assert gx_rows.meta["batches"] == batches["landed_credit_events.rows"]
    gx_unique = next(r for r in gx_rows.results if r.expectation_config.meta["id"] == "c_event_id_unique")
    assert gx_unique.result["unexpected_count"] == 103 and not gx_unique.success
    assert report.build_data_docs("r-batched", [batched], tmp_path / "docs") is None
    assert "landed_credit_events.rows" in (tmp_path / "docs" / "index.html").read_text()


def test_a_batched_frame_accepts_only_checks_that_batches_keep_exact(tmp_path):
    shutil.copytree(EXPECTATIONS_DIR, tmp_path, dirs_exist_ok=True)  # the suite with the .sql files it names
    doc = json.loads((EXPECTATIONS_DIR / "landed_credit_events.json").read_text())
    load_suite(_write(tmp_path / "ok.json", doc))
    for change in (
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "merchant_id"}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "amount", "mostly": 0.9}},
    ):
        bad = json.loads(json.dumps(doc))
        bad["expectations"].append({**change, "severity": "critical", "meta": {"id": "x", "frame": "rows"}})
        with pytest.raises(SuiteError, match="in batches"):
            load_suite(_write(tmp_path / "bad.json", bad))


def test_frame_sql_lives_in_sql_files_beside_the_suite(tmp_path):
    shutil.copytree(EXPECTATIONS_DIR, tmp_path, dirs_exist_ok=True)
    doc = json.loads((EXPECTATIONS_DIR / "landed_credit_events.json").read_text())
    suite = load_suite(_write(tmp_path / "ok.json", doc))
    assert suite.frames["rows"].sql == (EXPECTATIONS_DIR / "landed_credit_events" / "rows.sql").read_text()
    inline = json.loads(json.dumps(doc))
    inline["meta"]["frames"]["rows"] = {"sql": "SELECT event_id FROM rows"}
    with pytest.raises(SuiteError, match="sql_file"):
        load_suite(_write(tmp_path / "inline.json", inline))
    missing = json.loads(json.dumps(doc))
    missing["meta"]["frames"]["rows"]["sql_file"] = "landed_credit_events/nowhere.sql"
    with pytest.raises(SuiteError, match="cannot read landed_credit_events/nowhere.sql"):
        load_suite(_write(tmp_path / "missing.json", missing))


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_memory_is_bounded_by_the_settings_not_by_the_delivery(tmp_path):
    """3,000,000 credit events landed by the real landing code, the gate run in a
    child process with 100,000-row batches and DuckDB at 256MB: its peak RSS stays
    under 0.95 GiB with every event checked. Validated whole, the same delivery
    took the gate to 1.8 GiB (2.0 GiB at DuckDB's default 4GB); a 20,000,000 one
    took it to 9.8 GiB (bench/gate_landed_memory.py measures the large ones)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "gate_landed_memory.py"),
            "--events",
            "3000000",
            "--batch-rows",
            "100000",
            "--duckdb-memory-limit",
            "256MB",
            "--work",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[0])
    assert result["passed"] and result["evaluated"] == result["checks"], result
    assert result["event_rows_checked"] == 3_000_000
    assert result["peak_rss_bytes"] < 0.95 * 2**30, result
