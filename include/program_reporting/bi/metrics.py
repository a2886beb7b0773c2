"""Superset's dataset metrics: the dbt semantic layer's metrics (dbt_project/models/semantic/*.yml)
as a dataset export lists them, per published table.

The SQL is warehouse/semantic.py's `metric_sql()`, the project's one translator of that YAML
(ratios of sums, filters as CASE WHEN inside the aggregate, refusals naming the file and the
metric); this module only maps each metric onto Superset's fields. Cumulative metrics are left
out: a running total is a window over dates, not an aggregate a chart can apply to any grouping
(docs/bi.md). It imports nothing but PyYAML, through warehouse/semantic.py."""

from __future__ import annotations

from pathlib import Path

from program_reporting.warehouse.semantic import SEMANTIC_DIR, metric_sql

STOCK_WARNING = (
    "A stock: its value on one date. Sum it across programs or segments on the same date, "
    "never over dates (keep the day grain)."
)


def dataset_metrics(
    semantic_dir: Path = SEMANTIC_DIR, columns: dict[str, set[str]] | None = None
) -> dict[str, list[dict]]:
    """Superset metrics per table, in the semantic layer's order: each metric on every table of
    `columns` (table -> its column names: the datasets') that has the columns it reads; by
    default the published tables as the dbt models declare them. Tables without a metric are
    absent. Raises SemanticLayerError as metric_sql() does."""
    out: dict[str, list[dict]] = {}
    for metric in metric_sql(semantic_dir, columns=columns).values():
        if metric.sql is None:
            continue
        for table in metric.tables:
            out.setdefault(table, []).append(
                {
                    "metric_name": metric.name,
                    "verbose_name": metric.label,
                    "expression": metric.sql,
                    "description": metric.description or None,
                    # A rate reads as a percentage; money and counts keep Superset's default.
                    "d3format": ",.2%" if metric.unit == "rate" else None,
                    # Superset shows this beside the metric wherever it is picked.
                    "warning_text": None if metric.adds_over_dates else STOCK_WARNING,
                    "metric_type": metric.type,
                }
            )
    return out
