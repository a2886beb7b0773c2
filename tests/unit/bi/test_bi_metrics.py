"""Superset's dataset metrics generated from the dbt semantic layer (bi/metrics.py, on
warehouse/semantic.py's SQL): the SQL of each kind of metric, ratios as ratios of sums (checked
in DuckDB on a published set, where an average of the rates gives another number), the tables a
metric is offered on, and the refusals, naming the file and the metric."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import pytest
from helpers.marts import write_marts

from program_reporting.bi.metrics import dataset_metrics
from program_reporting.warehouse.semantic import SEMANTIC_DIR, SemanticLayerError, metric_sql

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "semantic"
COLUMNS = {
    "kpi_program_daily": {
        "program_code",
        "as_of_date",
        "enrolled_merchants",
        "drawn_to_date",
        "goods_purchased_on_day",
        "repaid_to_date",
        "outstanding_balance",
        "par30_balance",
        "par30_rate",
        "par90_rate",
        "interest_subsidy_cost_to_date",
    },
    "kpi_segment_daily": {
        "program_code",
        "as_of_date",
        "region",
        "enrolled_merchants",
        "drawn_to_date",
        "goods_purchased_on_day",
        "repaid_to_date",
        "outstanding_balance",
        "par30_balance",
        "interest_subsidy_cost_to_date",
    },
    "kpi_target_progress": {"program_code", "as_of_date", "metric", "target_value", "actual_value", "progress_rate"},
}


def by_name(metrics: list[dict]) -> dict[str, dict]:
    return {m["metric_name"]: m for m in metrics}


def test_each_kind_of_metric_becomes_one_sql_expression():
    out = dataset_metrics(FIXTURE)  # on the published tables as the dbt models declare them
    segment = by_name(out["kpi_segment_daily"])
    assert segment["enrolled_merchants"]["expression"] == "SUM(enrolled_merchants)"
    assert segment["enrolled_merchants"]["verbose_name"] == "Enrolled merchants"
    assert segment["enrolled_merchants"]["description"] == "Merchants enrolled at the end of the date."
    assert segment["enrolled_merchants"]["d3format"] is None  # a count keeps Superset's format
    assert segment["par30_rate"]["expression"] == (
        "CAST(SUM(par30_balance) AS DOUBLE PRECISION) / NULLIF(SUM(outstanding_balance), 0)"
    )
    assert segment["par30_rate"]["d3format"] == ",.2%" and segment["par30_rate"]["metric_type"] == "ratio"
    # A stock carries a warning in Superset; the one flow (purchases on the day) does not.
    assert "never over dates" in segment["drawn_to_date"]["warning_text"]
    assert "never over dates" in segment["par30_rate"]["warning_text"]
    assert segment["goods_purchased_on_day"]["warning_text"] is None
    # A cumulative metric has no single aggregate: left out.
    assert "drawn_cumulative" not in {m["metric_name"] for ms in out.values() for m in ms}
    target = by_name(out["kpi_target_progress"])
    assert target["jobs_retained_target"]["expression"] == (
        "SUM(CASE WHEN (metric = 'jobs_retained') THEN target_value END)"
    )
    assert target["target_actual_value"]["expression"] == "SUM(actual_value)"
    # The same SQL as the semantic layer's translator gives, metric for metric.
    sql = {name: m.sql for name, m in metric_sql(FIXTURE).items()}
    assert all(m["expression"] == sql[m["metric_name"]] for ms in out.values() for m in ms)


def test_a_metric_is_offered_wherever_its_columns_are():
    out = dataset_metrics(FIXTURE, COLUMNS)
    assert list(out) == list(COLUMNS)
    program = by_name(out["kpi_program_daily"])
    assert program["par90_rate"]["expression"] == (
        "CAST(SUM(par90_rate * outstanding_balance) AS DOUBLE PRECISION) / NULLIF(SUM(outstanding_balance), 0)"
    )
    assert program["enrolled_merchants"]["expression"] == "SUM(enrolled_merchants)"
    segment = by_name(out["kpi_segment_daily"])
    assert "par90_rate" not in segment  # kpi_segment_daily publishes no PAR90 balance
    assert "target_value" not in segment and "target_value" in by_name(out["kpi_target_progress"])
    # Given only kpi_program_daily's columns, a metric its columns lack has no table: refused, named.
    with pytest.raises(SemanticLayerError, match=r"kpis\.yml: metric target_value: no published table"):
        dataset_metrics(FIXTURE, {"kpi_program_daily": COLUMNS["kpi_program_daily"]})


def test_ratios_are_ratios_of_sums_on_a_published_set(tmp_path):
    """PAR30 of two Chinese programs together, and by region: the generated SQL gives
    SUM(par30_balance) / SUM(outstanding_balance), which an average of the published
    rates does not."""
    db = write_marts(tmp_path / "kpi.duckdb", "r1", "2020-06-09", programs=("SPARK-2020", "SPRING-THUNDER-2020"))
    par30 = by_name(dataset_metrics(FIXTURE, COLUMNS)["kpi_program_daily"])["par30_rate"]["expression"]
    con = duckdb.connect(str(db), read_only=True)
    try:
        generated, ratio_of_sums, average = con.execute(
            f"""SELECT {par30}, SUM(par30_balance) / SUM(outstanding_balance), AVG(par30_rate)
                FROM kpi_program_daily WHERE as_of_date = DATE '2020-06-09'"""
        ).fetchone()
        region = by_name(dataset_metrics(FIXTURE, COLUMNS)["kpi_segment_daily"])["par30_rate"]["expression"]
        by_region = con.execute(
            f"SELECT region, {region}, SUM(par30_balance) / SUM(outstanding_balance) FROM kpi_segment_daily "
            "WHERE as_of_date = DATE '2020-06-09' GROUP BY region ORDER BY region"
        ).fetchall()
    finally:
        con.close()
    assert generated == pytest.approx(float(ratio_of_sums), rel=1e-12)
    assert abs(generated - float(average)) > 1e-4, "this set must tell a ratio of sums from an average"
    assert [r[0] for r in by_region] == ["CN-GD", "CN-ZJ"]
    for _region, value, expected in by_region:
        assert value == pytest.approx(float(expected), rel=1e-12)


def _layer(tmp_path: Path, text: str) -> Path:
    (tmp_path / "sem.yml").write_text(textwrap.dedent(text))
    return tmp_path


MODEL = """
semantic_models:
  - name: segment_daily
    model: ref('kpi_segment_daily')
    dimensions: [{name: as_of_date, type: time, type_params: {time_granularity: day}}]
    measures:
      - {name: outstanding_balance, agg: sum}
"""


@pytest.mark.parametrize(
    "metrics, message",
    [
        ("- {name: m, type: simple, type_params: {measure: nowhere}}", "metric m: measure 'nowhere' is not defined"),
        ("- {name: m, type: ratio, type_params: {numerator: a, denominator: b}}", "numerator 'a' is not a metric"),
        (
            "- {name: a, type: ratio, type_params: {numerator: b, denominator: b}, config: {meta: {unit: rate}}}\n"
            "- {name: b, type: ratio, type_params: {numerator: a, denominator: a}, config: {meta: {unit: rate}}}",
            "refers to itself",
        ),
        # what no metric of the project uses is refused, not approximated
        (
            "- {name: a, type: simple, type_params: {measure: outstanding_balance}, config: {meta: {unit: money}}}\n"
            "- {name: m, type: derived, type_params: {expr: a, metrics: [a]}}",
            "metric m: type 'derived' has no SQL here",
        ),
        ("- {name: m, type: conversion, type_params: {}}", "metric m: type 'conversion' has no SQL here"),
        (
            "- {name: m, type: simple, type_params: {measure: {name: outstanding_balance, fill_nulls_with: 0}}}",
            "metric m: fill_nulls_with on its measure has no SQL here",
        ),
        (
            "- {name: a, type: simple, type_params: {measure: outstanding_balance}, config: {meta: {unit: money}}}\n"
            "- {name: m, type: ratio, type_params: {numerator: {name: a, filter: x}, denominator: a}}",
            "metric m: filter on its numerator has no SQL here",
        ),
    ],
)
def test_a_layer_that_names_what_it_does_not_define_is_refused(tmp_path, metrics, message):
    folder = _layer(tmp_path, MODEL + "metrics:\n" + textwrap.indent(metrics, "  "))
    with pytest.raises(SemanticLayerError, match=message) as caught:
        dataset_metrics(folder)
    assert str(folder / "sem.yml") in str(caught.value)


def test_an_aggregation_without_sql_is_refused(tmp_path):
    layer = MODEL.replace("agg: sum", "agg: median")
    with pytest.raises(SemanticLayerError, match="measure outstanding_balance: aggregation 'median' has no SQL here"):
        dataset_metrics(_layer(tmp_path, layer))
    with pytest.raises(SemanticLayerError, match="no semantic layer YAML"):
        dataset_metrics(tmp_path / "empty")


@pytest.mark.skipif(not SEMANTIC_DIR.is_dir(), reason=f"the project's semantic layer {SEMANTIC_DIR} is not there yet")
def test_the_projects_semantic_layer_gives_a_metric_for_every_published_kpi():
    out = dataset_metrics(SEMANTIC_DIR)
    names = {m["metric_name"] for ms in out.values() for m in ms}
    assert {"enrolled_merchants", "drawn_to_date", "outstanding_balance", "par30_rate", "par90_rate"} <= names
    for metrics in out.values():
        for m in metrics:
            if m["metric_type"] == "ratio":
                assert m["expression"].startswith("CAST(") and "NULLIF(" in m["expression"], m
