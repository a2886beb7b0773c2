"""The GX gate on candidate mart sets: real GX 1.x, real DuckDB, sets built by tests/helpers/marts.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from helpers.marts import mutate, write_audit

from program_reporting.core.redaction import PII_VALUE_PATTERNS, redact_text
from program_reporting.validation import gate
from program_reporting.validation.suites import load_suites

DS = "2020-06-05"


def _by_id(result: gate.GateResult) -> dict:
    return {r.check_id: r for r in result.results}


def test_suites_are_valid_files_with_explicit_severities():
    marts = load_suites("marts")
    landed = load_suites("landed")
    assert {s.name for s in marts} == {"kpi_program_daily", "kpi_segment_daily", "kpi_target_progress"}
    assert {s.name for s in landed} == {"landed_merchants", "landed_credit_events", "landed_employment_reports"}
    for s in marts + landed:
        assert {e["severity"] for e in s.expectations} <= {"critical", "warning"}
        assert any(e["severity"] == "critical" for e in s.expectations)


def test_clean_set_passes_and_records_a_verdict(env_paths):
    db = write_audit(env_paths, "r1", DS)
    result = gate.validate("r1", DS, env_paths)
    assert result.passed, result.summary()
    assert not result.blocking
    assert result.evaluated > 90
    # every check either ran or says why it was skipped (no previous published set yet)
    assert {r.status for r in result.results} <= {"passed", "failed", "skipped"}
    assert [r.check_id for r in result.results if r.skipped] == ["pd_programs_kept"]
    ids = _by_id(result)
    for key in (
        "sd_segments_sum_to_program",
        "pd_drawn_to_date_not_decreasing",
        "pd_enrolled_drop_guard",
        "tp_every_date_has_its_targets",
        "sd_segment_keys_in_program_daily",
        "pd_no_cn_mobile",
    ):
        assert ids[key].status == "passed"
    verdict = json.loads((env_paths.audit / "r1" / "gate.json").read_text())
    assert verdict["passed"] is True and verdict["candidate_sha256"] == gate.sha256_file(db)


def test_segments_not_summing_blocks_and_names_the_rule(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(
        db,
        "UPDATE kpi_segment_daily SET repaid_to_date = repaid_to_date + 0.01 "
        "WHERE region = 'CN-GD' AND as_of_date = DATE '2020-06-03'",
    )
    result = gate.validate("r1", DS, env_paths)
    assert not result.passed
    failed = [r.check_id for r in result.blocking]
    assert failed == ["sd_segments_sum_to_program"]
    check = _by_id(result)["sd_segments_sum_to_program"]
    assert check.observed_value["unexpected"] == 1
    row = check.failing_rows[0]
    assert row["metric"] == "repaid_to_date" and row["as_of_date"] == "2020-06-03"
    assert "sd_segments_sum_to_program" in result.reason()


def test_phone_number_in_a_published_text_column_blocks_and_is_never_echoed(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(
        db,
        "ALTER TABLE kpi_segment_daily ADD COLUMN owner_phone VARCHAR",
        "ALTER TABLE kpi_segment_daily ADD COLUMN remark VARCHAR",
        "UPDATE kpi_segment_daily SET owner_phone = '13812345678', remark = 'ask Wang on 13912345678'",
    )
    result = gate.validate("r1", DS, env_paths)
    assert not result.passed
    blocked = {r.check_id for r in result.blocking}
    assert {"sd_columns", "sd_no_pii_column_names", "sd_no_cn_mobile"} <= blocked
    text = json.dumps(result.to_dict(), default=str)
    assert "13812345678" not in text and "13912345678" not in text
    assert "[redacted:cn_mobile]" in text
    # the GX results kept for Data Docs are scrubbed too
    gx_text = json.dumps([r.to_json_dict() for _, r in result.gx_results], default=str)
    assert "13912345678" not in gx_text


@pytest.mark.parametrize(
    "value,kind",
    [
        ("13812345678", "cn_mobile"),
        ("+86 13812345678", "cn_mobile"),
        ("11010519491231002X", "cn_national_id"),
        ("王13812345678", "cn_mobile"),
        ("078-05-1120", "us_ssn"),
        ("(802) 555-0134", "us_phone"),
        ("802-555-0134", "us_phone"),
    ],
)
def test_pii_patterns_recognise_and_redact(value, kind):
    assert re.search(PII_VALUE_PATTERNS[kind], f"contact {value} today")
    assert value not in redact_text(f"contact {value} today")


@pytest.mark.parametrize(
    "value",
    [
        "CN-GD",
        "SPARK-2020",
        "50000000000.00",
        "2020-06-05",
        "jobs_retained",
        # a report digest of the index that once held a mobile-shaped run of digits
        "8d95fc32f75a9aaab241841f14324372665a190b4f0649410c156ca7892359",
    ],
)
def test_pii_patterns_leave_ordinary_values_alone(value):
    assert redact_text(value) == value


def test_national_id_in_target_metric_blocks(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(
        db,
        "UPDATE kpi_target_progress SET metric = 'id 11010519491231002X' WHERE metric = 'drawn_to_date' "
        "AND as_of_date = DATE '2020-06-02'",
    )
    result = gate.validate("r1", DS, env_paths)
    assert "tp_no_cn_national_id" in {r.check_id for r in result.blocking}


def test_empty_set_evaluates_nothing_and_fails(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(db, "DELETE FROM kpi_program_daily", "DELETE FROM kpi_segment_daily", "DELETE FROM kpi_target_progress")
    result = gate.validate("r1", DS, env_paths)
    assert not result.passed
    ids = _by_id(result)
    # these would pass vacuously on an empty frame; here they count as failures
    for key in ("pd_program_code_not_null", "sd_segments_sum_to_program", "pd_no_cn_mobile", "pd_key_unique"):
        assert ids[key].status == "not evaluated" and ids[key].blocking, key
        assert "no rows" in ids[key].note


def test_missing_column_is_not_evaluated_and_blocks(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(db, "ALTER TABLE kpi_program_daily DROP COLUMN par30_rate")
    result = gate.validate("r1", DS, env_paths)
    check = _by_id(result)["pd_par30_rate_in_0_1"]
    assert check.status == "not evaluated" and check.blocking
    assert "par30_rate" in check.note
    assert not result.passed


def test_missing_table_is_not_evaluated_and_blocks(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(db, "DROP TABLE kpi_target_progress")
    result = gate.validate("r1", DS, env_paths)
    check = _by_id(result)["tp_key_unique"]
    assert check.status == "not evaluated" and "could not be computed" in check.note
    assert not result.passed


def test_cumulative_figure_decreasing_blocks(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(
        db,
        "UPDATE kpi_program_daily SET written_off_to_date = 0 "
        "WHERE program_code = 'PPP-2020' AND as_of_date = DATE '2020-06-05'",
        "UPDATE kpi_segment_daily SET written_off_to_date = 0 "
        "WHERE program_code = 'PPP-2020' AND as_of_date = DATE '2020-06-05'",
    )
    result = gate.validate("r1", DS, env_paths)
    assert [r.check_id for r in result.blocking] == ["pd_written_off_to_date_not_decreasing"]


def test_day_over_day_drop_against_previous_published_set(env_paths, monkeypatch):
    from program_reporting.publishing.publish import publish

    write_audit(env_paths, "r1", "2020-06-04", bump=60)
    assert gate.validate("r1", "2020-06-04", env_paths).passed
    publish("r1", env_paths)
    write_audit(env_paths, "r2", DS)  # enrolled merchants about half of what was published
    result = gate.validate("r2", DS, env_paths)
    assert [r.check_id for r in result.blocking] == ["pd_enrolled_drop_guard"]
    row = _by_id(result)["pd_enrolled_drop_guard"].failing_rows[0]
    assert row["basis"] == "previous published set"
    assert _by_id(result)["pd_programs_kept"].status == "passed"

    monkeypatch.setenv("PROGRAM_REPORTING_MAX_DAILY_DROP", "0.9")
    assert gate.validate("r2", DS, env_paths).passed


def test_program_dropped_from_candidate_blocks(env_paths):
    from program_reporting.publishing.publish import publish

    write_audit(env_paths, "r1", "2020-06-04")
    gate.validate("r1", "2020-06-04", env_paths)
    publish("r1", env_paths)
    write_audit(env_paths, "r2", DS, programs=("SPARK-2020",))
    result = gate.validate("r2", DS, env_paths)
    assert "pd_programs_kept" in {r.check_id for r in result.blocking}


def test_warning_is_reported_but_does_not_block(env_paths):
    db = write_audit(env_paths, "r1", DS)
    # outstanding above the limit after a limit cut: utilization > 1 is a warning
    mutate(db, "UPDATE kpi_program_daily SET utilization_rate = 1.25 WHERE as_of_date = DATE '2020-06-03'")
    result = gate.validate("r1", DS, env_paths)
    assert result.passed
    assert [w.check_id for w in result.warnings] == ["pd_utilization_rate_in_0_1"]


def test_rate_outside_0_1_blocks(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(db, "UPDATE kpi_program_daily SET reporting_coverage = 1.5 WHERE as_of_date = DATE '2020-06-03'")
    result = gate.validate("r1", DS, env_paths)
    assert "pd_reporting_coverage_in_0_1" in {r.check_id for r in result.blocking}


def test_target_rows_must_match_program_dates_and_figures(env_paths):
    db = write_audit(env_paths, "r1", DS)
    mutate(
        db,
        "DELETE FROM kpi_target_progress WHERE as_of_date = DATE '2020-06-04' AND metric = 'jobs_retained'",
        "UPDATE kpi_target_progress SET actual_value = actual_value + 1 WHERE as_of_date = DATE '2020-06-02' "
        "AND metric = 'drawn_to_date'",
    )
    result = gate.validate("r1", DS, env_paths)
    assert {r.check_id for r in result.blocking} == {"tp_every_date_has_its_targets", "tp_actual_is_published_figure"}


def test_run_info_must_name_the_run(env_paths):
    write_audit(env_paths, "r1", DS)
    (env_paths.audit / "r1").rename(env_paths.audit / "r9")
    result = gate.validate("r9", DS, env_paths)
    assert [r.check_id for r in result.blocking] == ["pd_run_info_run_id"]


def test_no_candidate_set_is_an_error(env_paths):
    with pytest.raises(gate.GateError, match="no candidate set"):
        gate.validate("nope", DS, env_paths)


def test_cli_exit_status_and_help(env_paths, capsys):
    db = write_audit(env_paths, "r1", DS)
    mutate(db, "UPDATE kpi_segment_daily SET enrolled_merchants = enrolled_merchants + 1 WHERE region = 'US-VT'")
    from program_reporting.cli import main

    assert main(["validate", "--run-id", "r1", "--ds", DS]) == 1
    out = capsys.readouterr().out
    assert "gate BLOCKED" in out and "sd_segments_sum_to_program" in out
    help_text = subprocess.run(
        [sys.executable, "-m", "program_reporting.cli", "validate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "critical" in help_text and "PROGRAM_REPORTING_MAX_DAILY_DROP" in help_text
