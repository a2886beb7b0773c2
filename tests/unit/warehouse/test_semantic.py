"""metric_sql(): the semantic layer's metrics as SQL over the published tables' columns (the formulas a
BI tool's dataset metrics are made from). On the project's own YAML, on small YAML written here to
reach each refusal, and run in DuckDB on a few rows. That the formulas give the published figures
on a built warehouse: tests/integration/test_semantic_layer.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml

from program_reporting.core.settings import DBT_PROJECT_DIR
from program_reporting.warehouse.semantic import (
    PUBLISHED_TABLES,
    MetricSQL,
    SemanticLayerError,
    metric_sql,
)

BOTH = ("kpi_program_daily", "kpi_segment_daily")


@pytest.fixture(scope="module")
def metrics() -> dict[str, MetricSQL]:
    return metric_sql()


def ratio(numerator: str, denominator: str) -> str:
    return f"CAST({numerator} AS DOUBLE PRECISION) / NULLIF({denominator}, 0)"


def test_ratios_are_ratios_of_sums_over_the_tables_that_have_their_columns(metrics):
    assert metrics["par30_rate"].sql == ratio("SUM(par30_balance)", "SUM(outstanding_balance)")
    assert metrics["par30_rate"].tables == BOTH
    assert metrics["reporting_coverage"].sql == ratio("SUM(reporting_merchants)", "SUM(enrolled_merchants)")
    assert metrics["utilization_rate"].sql == ratio("SUM(outstanding_balance)", "SUM(credit_limit_total)")
    assert metrics["jobs_retention_rate"].sql == ratio("SUM(jobs_retained)", "SUM(jobs_baseline)")
    # the numerators kpis.md does not publish, rebuilt from the published rate: by program only
    assert metrics["par90_rate"].sql == ratio("SUM(par90_rate * outstanding_balance)", "SUM(outstanding_balance)")
    assert metrics["survival_rate_90d"].sql == (
        ratio("SUM(round(survival_rate_90d * survival_cohort_90d))", "SUM(survival_cohort_90d)")
    )
    assert metrics["par90_rate"].tables == metrics["survival_rate_90d"].tables == ("kpi_program_daily",)
    assert {m.type for m in metrics.values() if m.sql and " / NULLIF(" in m.sql} == {"ratio"}
    assert all(m.unit == "rate" for m in metrics.values() if m.type == "ratio" and m.name != "avg_limit_per_merchant")


def declared(table: str) -> set[str]:
    model = yaml.safe_load((DBT_PROJECT_DIR / "models" / "marts" / f"{table}.yml").read_text())["models"][0]
    return {c["name"] for c in model["columns"]}


def test_the_tables_a_metric_is_offered_on_are_those_of_the_columns_given(metrics):
    """A BI tool passes its datasets' columns: a metric goes on each table that has its columns, in
    their order; one that no table given can compute is refused, named."""
    columns = {table: declared(table) for table in reversed(PUBLISHED_TABLES)}
    given = metric_sql(columns=columns)
    assert given["par30_rate"].tables == ("kpi_segment_daily", "kpi_program_daily")
    assert given["par30_rate"].sql == metrics["par30_rate"].sql
    columns["kpi_program_daily"] -= {"par90_rate"}
    with pytest.raises(SemanticLayerError, match=r"sem_kpi_program_daily\.yml: metric par90_balance: no published"):
        metric_sql(columns=columns)


def test_every_published_figure_has_a_metric_of_its_name(metrics):
    for table in ("kpi_program_daily", "kpi_segment_daily"):
        model = yaml.safe_load((DBT_PROJECT_DIR / "models" / "marts" / f"{table}.yml").read_text())["models"][0]
        figures = [c["name"] for c in model["columns"] if c["name"] not in ("program_code", "as_of_date")]
        figures = [f for f in figures if f not in ("region", "business_type", "size_class")]
        assert [f for f in figures if f not in metrics] == [], table
        assert all(table in metrics[f].tables for f in figures), table


def test_only_the_days_purchases_add_up_over_dates(metrics):
    assert [m.name for m in metrics.values() if m.adds_over_dates] == ["goods_purchased_on_day"]
    cumulative = metrics["drawn_cumulative"]
    assert (cumulative.type, cumulative.sql, cumulative.adds_over_dates) == ("cumulative", None, False)


def test_a_filtered_metric_sums_the_rows_its_filter_keeps(metrics):
    target = metrics["jobs_retained_target"]
    assert target.sql == "SUM(CASE WHEN (metric = 'jobs_retained') THEN target_value END)"
    assert target.tables == ("kpi_target_progress",)
    assert metrics["target_progress_rate"].sql == ratio("SUM(actual_value)", "SUM(target_value)")


def test_labels_descriptions_and_sources_come_from_the_yaml(metrics):
    par30 = metrics["par30_rate"]
    assert par30.label == "PAR30" and par30.description.startswith("Portfolio at risk, 30 days")
    assert par30.source == DBT_PROJECT_DIR / "models" / "semantic" / "sem_kpi_segment_daily.yml"
    assert all(
        m.label and m.description and m.tables and set(m.tables) <= set(PUBLISHED_TABLES) for m in metrics.values()
    )


def test_the_sql_runs_and_a_ratio_is_not_an_average_of_rates(metrics):
    """Two regions: PAR30 10% of 1,000 and 50% of 9,000 are 46% together, not their mean 30%;
    a region with nothing outstanding has no PAR30 (null), not 0."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE kpi_segment_daily AS SELECT * FROM (VALUES "
        "('CN-GD', 100.00::DECIMAL(18,2), 1000.00::DECIMAL(18,2), 3::BIGINT, 4::BIGINT), "
        "('CN-ZJ', 4500.00::DECIMAL(18,2), 9000.00::DECIMAL(18,2), 1::BIGINT, 4::BIGINT), "
        "('CN-SH', 0.00::DECIMAL(18,2), 0.00::DECIMAL(18,2), 0::BIGINT, 0::BIGINT)"
        ") AS t(region, par30_balance, outstanding_balance, reporting_merchants, enrolled_merchants)"
    )
    par30, coverage = metrics["par30_rate"].sql, metrics["reporting_coverage"].sql
    assert con.execute(f"SELECT {par30}, {coverage} FROM kpi_segment_daily").fetchone() == (0.46, 0.5)
    by_region = dict(con.execute(f"SELECT region, {par30} FROM kpi_segment_daily GROUP BY region").fetchall())
    assert by_region == {"CN-GD": 0.1, "CN-ZJ": 0.5, "CN-SH": None}


@pytest.mark.postgres
def test_on_postgresql_a_ratio_of_whole_numbers_is_not_divided_as_integers(metrics, pg_database):
    """PostgreSQL's SUM of an INTEGER column is a bigint, and bigint / bigint drops the fraction: the
    numerator's cast keeps reporting_coverage at 0.5 where an integer division gives 0."""
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=pg_database)
    try:
        with con.cursor() as cur:
            cur.execute(
                "CREATE TABLE kpi_segment_daily AS SELECT * FROM (VALUES (3, 4), (1, 4)) "
                "AS t(reporting_merchants, enrolled_merchants)"
            )
            cur.execute("ALTER TABLE kpi_segment_daily ALTER reporting_merchants TYPE integer")
            cur.execute(f"SELECT {metrics['reporting_coverage'].sql} FROM kpi_segment_daily")
            (coverage,) = cur.fetchone()
            cur.execute("SELECT SUM(reporting_merchants) / NULLIF(SUM(enrolled_merchants), 0) FROM kpi_segment_daily")
            (uncast,) = cur.fetchone()
    finally:
        con.close()
    assert coverage == 0.5
    assert uncast == 0  # what the SQL gave without the cast


# --------------------------------------------------------------------------
# refusals, on small YAML written here


def write_layer(tmp_path: Path, model: str, measure: dict, metrics: list[dict]) -> Path:
    folder = tmp_path / "semantic"
    folder.mkdir()
    (folder / "sem_one.yml").write_text(
        yaml.safe_dump(
            {
                "semantic_models": [
                    {
                        "name": "one",
                        "model": model,
                        "primary_entity": "segment",
                        "dimensions": [{"name": "region", "type": "categorical"}],
                        "measures": [measure],
                    }
                ],
                "metrics": metrics,
            }
        )
    )
    return folder


SUM = {"name": "par30_balance", "agg": "sum"}


def simple(name="par30_balance", measure="par30_balance", **extra) -> dict:
    return {"name": name, "label": name, "type": "simple", "type_params": {"measure": measure}} | extra


@pytest.mark.parametrize(
    "model, measure, metrics, message",
    [
        ("ref('fct_segment_daily')", SUM, [simple(config={"meta": {"unit": "money"}})], "only the published tables"),
        ("ref('kpi_segment_daily')", SUM | {"agg": "percentile"}, [simple()], "aggregation 'percentile'"),
        (
            "ref('kpi_segment_daily')",
            SUM,
            [simple(filter="{{ Dimension('segment__city') }} = 'x'", config={"meta": {"unit": "money"}})],
            "filter on segment__city",
        ),
        (
            "ref('kpi_segment_daily')",
            SUM,
            [
                simple(
                    filter="{{ TimeDimension('metric_time', 'day') }} > '2020-01-01'",
                    config={"meta": {"unit": "money"}},
                )
            ],
            "only Dimension",
        ),
        (
            "ref('kpi_segment_daily')",
            SUM | {"expr": "par30_amount"},
            [simple(config={"meta": {"unit": "money"}})],
            "no published table",
        ),
        ("ref('kpi_segment_daily')", SUM, [simple()], "config.meta.unit is None"),
        ("ref('kpi_segment_daily')", SUM, [simple(measure="par90_balance")], "measure 'par90_balance' is not defined"),
        (
            "ref('kpi_segment_daily')",
            SUM,
            [
                simple(config={"meta": {"unit": "money"}}),
                {
                    "name": "r",
                    "label": "r",
                    "type": "ratio",
                    "type_params": {"numerator": "par30_balance", "denominator": "x"},
                },
            ],
            "denominator 'x' is not a metric",
        ),
        (
            "ref('kpi_segment_daily')",
            SUM,
            [
                simple(config={"meta": {"unit": "money"}}),
                {
                    "name": "r",
                    "type": "ratio",
                    "type_params": {"numerator": "par30_balance", "denominator": "par30_balance"},
                    "filter": "{{ Dimension('segment__region') }} = 'CN-GD'",
                    "config": {"meta": {"unit": "rate"}},
                },
            ],
            "metric r: a filter on a ratio metric has no SQL here",
        ),
        (
            "ref('kpi_segment_daily')",
            SUM,
            [simple(config={"meta": {"unit": "money"}}), simple(config={"meta": {"unit": "money"}})],
            "metric par30_balance is defined twice",
        ),
    ],
)
def test_what_it_cannot_translate_it_refuses_naming_file_and_metric(tmp_path, model, measure, metrics, message):
    folder = write_layer(tmp_path, model, measure, metrics)
    with pytest.raises(SemanticLayerError, match=message) as caught:
        metric_sql(folder)
    assert str(folder / "sem_one.yml") in str(caught.value)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SemanticLayerError, match="no semantic layer YAML"):
        metric_sql(tmp_path)
