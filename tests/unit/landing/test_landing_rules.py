"""Every row rule of extracts.md: a breaking row is quarantined under its rule
name with file, line and raw text; the passing variant loads. Real files,
real landing code."""

from __future__ import annotations

import duckdb
import pytest
from helpers.deliveries import row, write_delivery

from program_reporting.landing import land as landing
from program_reporting.landing.rules import rule_names

DS = "2020-06-02"

# (source, rule, breaking overrides, passing overrides)
CASES = [
    ("merchants", "merchant_id_missing", {"merchant_id": ""}, {"merchant_id": "M7"}),
    ("merchants", "merchant_id_too_long", {"merchant_id": "M" * 33}, {"merchant_id": "M" * 32}),
    ("merchants", "program_code_missing", {"program_code": ""}, {"program_code": "SPRING-THUNDER-2020"}),
    ("merchants", "program_unknown", {"program_code": "SPARK-2021"}, {"program_code": "SPARK-2020"}),
    ("merchants", "business_name_missing", {"business_name": ""}, {"business_name": '张记便利店, "新"\n二店'}),
    ("merchants", "region_missing", {"region": ""}, {"region": "CN-ZJ"}),
    ("merchants", "region_unknown", {"region": "US-VT"}, {"region": "CN-SH"}),
    (
        "merchants",
        "region_unknown",
        {"region": "CN-XX"},
        {"program_code": "PPP-2020", "region": "US-VT", "updated_at": "2020-06-02T23:59:00-04:00"},
    ),
    ("merchants", "city_missing", {"city": ""}, {"city": "Shenzhen"}),
    ("merchants", "business_type_missing", {"business_type": ""}, {"business_type": "exporter"}),
    ("merchants", "business_type_invalid", {"business_type": "bank"}, {"business_type": "street_stall"}),
    ("merchants", "size_class_missing", {"size_class": ""}, {"size_class": "medium"}),
    ("merchants", "size_class_invalid", {"size_class": "large"}, {"size_class": "small"}),
    ("merchants", "date_invalid", {"registered_on": "2020-02-30"}, {"registered_on": "2020-02-29"}),
    ("merchants", "date_invalid", {"enrolled_on": "2020/06/01"}, {"enrolled_on": "2020-06-01"}),
    ("merchants", "enrolled_on_missing", {"enrolled_on": ""}, {"registered_on": ""}),
    ("merchants", "status_missing", {"status": ""}, {"status": "exited"}),
    ("merchants", "status_invalid", {"status": "closed"}, {"status": "suspended"}),
    ("merchants", "updated_at_missing", {"updated_at": ""}, {"updated_at": "2020-06-02T00:00:00Z"}),
    ("merchants", "timestamp_invalid", {"updated_at": "2020-06-02T09:15:00"}, {"updated_at": "2020-06-02T09:15+0800"}),
    (
        "merchants",
        "registered_after_enrolled",
        {"registered_on": "2020-06-03", "enrolled_on": "2020-06-02"},
        {"registered_on": "2020-06-02", "enrolled_on": "2020-06-02"},
    ),
    ("merchants", "enrolled_after_ds", {"enrolled_on": "2020-06-03"}, {"enrolled_on": "2019-12-01"}),
    # end of ds in Asia/Shanghai is 2020-06-02T16:00Z
    (
        "merchants",
        "updated_after_ds_end",
        {"updated_at": "2020-06-02T16:00:00Z"},
        {"updated_at": "2020-06-02T23:59:59+08:00"},
    ),
    ("credit_events", "event_id_missing", {"event_id": ""}, {"event_id": "E-x"}),
    ("credit_events", "event_id_too_long", {"event_id": "E" * 41}, {"event_id": "E" * 40}),
    ("credit_events", "credit_line_id_missing", {"credit_line_id": ""}, {"credit_line_id": "L9"}),
    ("credit_events", "credit_line_id_too_long", {"credit_line_id": "L" * 33}, {"credit_line_id": "L" * 32}),
    ("credit_events", "merchant_id_missing", {"merchant_id": ""}, {"merchant_id": "M1"}),
    ("credit_events", "merchant_id_too_long", {"merchant_id": "M" * 33}, {"merchant_id": "M1"}),
    ("credit_events", "event_type_missing", {"event_type": ""}, {"event_type": "repayment"}),
    ("credit_events", "event_type_invalid", {"event_type": "refund"}, {"event_type": "written_off"}),
    ("credit_events", "event_at_missing", {"event_at": ""}, {"event_at": "2020-05-01T00:00:00+08:00"}),
    ("credit_events", "timestamp_invalid", {"event_at": "2020-06-02 10:00"}, {"event_at": "2020-06-02T10:00:00.5Z"}),
    (
        "credit_events",
        "event_at_after_ds_end",
        {"event_at": "2020-06-03T00:00:00+08:00"},
        {"event_at": "2020-06-02T15:59:59Z"},
    ),
    ("credit_events", "amount_missing", {"amount": ""}, {"amount": "0"}),
    ("credit_events", "amount_invalid", {"amount": "12.345"}, {"amount": "12.34"}),
    ("credit_events", "amount_invalid", {"amount": "1e3"}, {"amount": "1000"}),
    ("credit_events", "amount_invalid", {"amount": "1,000.00"}, {"amount": "1000.00"}),
    ("credit_events", "amount_invalid", {"amount": "abc"}, {"amount": "0.5"}),
    ("credit_events", "amount_negative", {"amount": "-5.00"}, {"amount": "5.00"}),
    ("credit_events", "amount_too_large", {"amount": "1000000000000.00"}, {"amount": "999999999999.99"}),
    # beyond any DECIMAL DuckDB has (38 digits): still too large, not invalid
    ("credit_events", "amount_too_large", {"amount": "9" * 39 + ".99"}, {"amount": "0.01"}),
    ("credit_events", "amount_too_large", {"amount": "1" + "0" * 400}, {"amount": "1"}),
    # extracts.md: the offset lies between -12:00 and +14:00
    (
        "credit_events",
        "timestamp_invalid",
        {"event_at": "2020-06-02T10:00:00+25:00"},
        {"event_at": "2020-06-02T10:00:00+14:00"},
    ),
    (
        "credit_events",
        "timestamp_invalid",
        {"event_at": "2020-06-02T10:00:00-12:30"},
        {"event_at": "2020-06-01T10:00:00-12:00"},
    ),
    (
        "credit_events",
        "timestamp_invalid",
        {"event_at": "2020-06-02T10:00:00+0860"},
        {"event_at": "2020-06-02T10:00:00+0845"},
    ),
    (
        "credit_events",
        "timestamp_invalid",
        {"event_at": "2020-06-02T10:00:00+99"},
        {"event_at": "2020-06-02T10:00:00+13"},
    ),
    (
        "merchants",
        "timestamp_invalid",
        {"updated_at": "2020-06-01T09:15:00-1201"},
        {"updated_at": "2020-06-01T09:15:00-1159"},
    ),
    (
        "employment_reports",
        "timestamp_invalid",
        {"reported_at": "2020-06-01T08:00:00+14:01"},
        {"reported_at": "2020-06-01T08:00:00+14:00"},
    ),
    (
        "credit_events",
        "amount_not_zero_for_line_closed",
        {"event_type": "line_closed", "amount": "1.00"},
        {"event_type": "line_closed", "amount": "0.00"},
    ),
    ("credit_events", "currency_missing", {"currency": ""}, {"currency": "CNY"}),
    ("credit_events", "currency_not_program_currency", {"currency": "USD"}, {"currency": "CNY"}),
    (
        "credit_events",
        "rate_missing_for_line_opened",
        {"event_type": "line_opened", "annual_interest_rate": ""},
        {"event_type": "line_opened", "annual_interest_rate": "0"},
    ),
    ("credit_events", "rate_invalid", {"annual_interest_rate": "4.35%"}, {"annual_interest_rate": "0.0435"}),
    ("credit_events", "rate_negative", {"annual_interest_rate": "-0.01"}, {"annual_interest_rate": "0.01"}),
    ("credit_events", "due_on_missing_for_drawdown", {"due_on": ""}, {"event_type": "repayment", "due_on": ""}),
    ("credit_events", "date_invalid", {"due_on": "2020-07-32"}, {"due_on": "2020-07-31"}),
    (
        "credit_events",
        "goods_category_missing_for_drawdown",
        {"goods_category": ""},
        {"event_type": "repayment", "goods_category": ""},
    ),
    (
        "credit_events",
        "goods_category_invalid",
        {"goods_category": "cars"},
        {"event_type": "repayment", "goods_category": "cars"},
    ),
    ("employment_reports", "report_id_missing", {"report_id": ""}, {"report_id": "R-x"}),
    ("employment_reports", "report_id_too_long", {"report_id": "R" * 41}, {"report_id": "R" * 40}),
    ("employment_reports", "merchant_id_missing", {"merchant_id": ""}, {"merchant_id": "M1"}),
    ("employment_reports", "merchant_id_too_long", {"merchant_id": "M" * 33}, {"merchant_id": "M1"}),
    ("employment_reports", "period_month_missing", {"period_month": ""}, {"period_month": "2019-12"}),
    ("employment_reports", "period_month_invalid", {"period_month": "2020-13"}, {"period_month": "2020-05"}),
    ("employment_reports", "period_month_after_ds", {"period_month": "2020-07"}, {"period_month": "2020-06"}),
    ("employment_reports", "employees_missing", {"employees": ""}, {"employees": "0"}),
    ("employment_reports", "employees_invalid", {"employees": "4.5"}, {"employees": "99999"}),
    ("employment_reports", "employees_out_of_range", {"employees": "100000"}, {"employees": "99999"}),
    ("employment_reports", "employees_out_of_range", {"employees": "-1"}, {"employees": "0"}),
    ("employment_reports", "baseline_employees_missing", {"baseline_employees": ""}, {"baseline_employees": "0"}),
    ("employment_reports", "baseline_employees_invalid", {"baseline_employees": "five"}, {"baseline_employees": "5"}),
    ("employment_reports", "baseline_negative", {"baseline_employees": "-2"}, {"baseline_employees": "2"}),
    ("employment_reports", "reported_at_missing", {"reported_at": ""}, {"reported_at": "2020-06-01T00:00:00Z"}),
    ("employment_reports", "timestamp_invalid", {"reported_at": "June 2"}, {"reported_at": "2020-06-02T08:00:00Z"}),
    (
        "employment_reports",
        "reported_at_after_ds_end",
        {"reported_at": "2020-06-03T00:00:01+08:00"},
        {"reported_at": "2020-06-02T23:59:59+08:00"},
    ),
    (
        "employment_reports",
        "verification_status_missing",
        {"verification_status": ""},
        {"verification_status": "self_reported"},
    ),
    (
        "employment_reports",
        "verification_status_invalid",
        {"verification_status": "audited"},
        {"verification_status": "verified"},
    ),
]


@pytest.fixture
def drop(env_paths, monkeypatch):
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", 1)])
    landing.land("merchants", DS, env_paths)
    return env_paths


def quarantine(paths, source, ds=DS):
    f = paths.quarantine / source / f"ds={ds}" / "quarantine.parquet"
    if not f.exists():
        return []
    return duckdb.sql(f"SELECT line, rule, detail, raw_text, file FROM '{f}' ORDER BY line").fetchall()


def raw_count(paths, source, ds=DS):
    return duckdb.sql(f"SELECT count(*) FROM '{paths.raw / source / f'ds={ds}' / 'rows.parquet'}'").fetchall()[0][0]


@pytest.mark.parametrize(
    "source, rule, breaking, passing", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_breaking_row_is_quarantined(drop, source, rule, breaking, passing):
    rows = [row(source, 100), row(source, 101, **breaking)]
    write_delivery(drop.drop, source, DS, rows)
    record = landing.land(source, DS, drop)
    q = quarantine(drop, source)
    assert [(line, r) for line, r, *_ in q] == [(3, rule)], q
    line, _rule, detail, raw_text, file = q[0]
    assert detail and file == f"{source}/ds={DS}/{source}.csv"
    assert raw_text.split(",")[0] == (rows[1][list(rows[1])[0]] if "\n" not in raw_text else raw_text.split(",")[0])
    assert record["loaded"] == 1 and record["quarantined"] == 1
    assert record["quarantine_by_rule"] == {rule: 1}


@pytest.mark.parametrize(
    "source, rule, breaking, passing", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_passing_row_loads(drop, source, rule, breaking, passing):
    write_delivery(drop.drop, source, DS, [row(source, 100), row(source, 101, **passing)])
    record = landing.land(source, DS, drop)
    assert quarantine(drop, source) == []
    assert record["loaded"] == 2 == raw_count(drop, source)


def test_every_rule_name_is_tested():
    tested = {c[1] for c in CASES} | {
        "merchant_id_duplicate_in_file",
        "merchant_program_changed",
        "event_id_conflict",
        "report_id_duplicate",
        "field_count",
        "orphan_merchant_unknown",
    }
    assert set(rule_names()) <= tested, set(rule_names()) - tested


def test_merchant_id_duplicate_quarantines_every_sharing_row(drop):
    rows = [row("merchants", 5), row("merchants", 6), row("merchants", 5, city="Foshan")]
    write_delivery(drop.drop, "merchants", "2020-06-03", rows)
    landing.land("merchants", "2020-06-03", drop)
    assert [(l, r) for l, r, *_ in quarantine(drop, "merchants", "2020-06-03")] == [
        (2, "merchant_id_duplicate_in_file"),
        (4, "merchant_id_duplicate_in_file"),
    ]
    write_delivery(drop.drop, "merchants", "2020-06-03", rows[:2])
    landing.land("merchants", "2020-06-03", drop)
    assert quarantine(drop, "merchants", "2020-06-03") == []


def test_merchant_never_changes_program(drop):
    write_delivery(
        drop.drop,
        "merchants",
        "2020-06-03",
        [
            row("merchants", 1, program_code="SPRING-THUNDER-2020", updated_at="2020-06-03T09:00:00+08:00"),
            row("merchants", 1, updated_at="2020-06-03T09:00:00+08:00", status="suspended"),
        ][1:]
        + [row("merchants", 1, program_code="SPRING-THUNDER-2020", updated_at="2020-06-03T09:00:00+08:00")][:0],
    )
    landing.land("merchants", "2020-06-03", drop)
    assert quarantine(drop, "merchants", "2020-06-03") == []  # same program: an update
    write_delivery(
        drop.drop,
        "merchants",
        "2020-06-04",
        [row("merchants", 1, program_code="SPRING-THUNDER-2020", updated_at="2020-06-04T09:00:00+08:00")],
    )
    landing.land("merchants", "2020-06-04", drop)
    assert [r for _l, r, *_ in quarantine(drop, "merchants", "2020-06-04")] == ["merchant_program_changed"]


def test_event_id_repeats_and_conflicts(drop):
    e = row("credit_events", 1)
    changed = dict(e, amount="99.00")
    same_instant = dict(e, event_at="2020-06-02T02:00:00Z")  # the same instant written differently
    write_delivery(drop.drop, "credit_events", DS, [e, same_instant, changed, row("credit_events", 2)])
    record = landing.land("credit_events", DS, drop)
    assert [(l, r) for l, r, *_ in quarantine(drop, "credit_events")] == [(4, "event_id_conflict")]
    assert record["loaded"] == 3  # the identical repeat loads; dbt counts it once
    # a later delivery: identical repeat loads, a different one is quarantined
    write_delivery(drop.drop, "credit_events", "2020-06-03", [e, dict(row("credit_events", 2), amount="1.00")])
    record = landing.land("credit_events", "2020-06-03", drop)
    q = quarantine(drop, "credit_events", "2020-06-03")
    assert [(l, r) for l, r, *_ in q] == [(3, "event_id_conflict")] and "2020-06-02" in q[0][2]
    assert record["loaded"] == 1


def test_report_id_duplicate(drop):
    r = row("employment_reports", 1)
    write_delivery(drop.drop, "employment_reports", DS, [r, row("employment_reports", 2), r])
    landing.land("employment_reports", DS, drop)
    assert [(l, x) for l, x, *_ in quarantine(drop, "employment_reports")] == [(4, "report_id_duplicate")]
    write_delivery(drop.drop, "employment_reports", "2020-06-03", [r, row("employment_reports", 3)])
    record = landing.land("employment_reports", "2020-06-03", drop)
    assert [x for _l, x, *_ in quarantine(drop, "employment_reports", "2020-06-03")] == ["report_id_duplicate"]
    assert record["loaded"] == 1


def test_region_is_checked_against_the_programs_country(drop):
    write_delivery(
        drop.drop,
        "merchants",
        "2020-06-03",
        [row("merchants", 8, program_code="PPP-2020", region="CN-GD", updated_at="2020-06-03T09:00:00-04:00")],
    )
    landing.land("merchants", "2020-06-03", drop)
    q = quarantine(drop, "merchants", "2020-06-03")
    assert [x for _l, x, *_ in q] == ["region_unknown"] and "US" in q[0][2]
