"""Superset's dataset metrics, generated from the dbt semantic layer: one source of truth
for every formula (dbt_project/models/semantic/*.yml).

`dataset_metrics(semantic_dir)` reads the standard dbt semantic-layer YAML (dbt 1.11,
MetricFlow): `semantic_models:` with `model: ref('<published table>')`, `dimensions:` and
`measures:` (`agg`, optional `expr`, `non_additive_dimension`), and `metrics:` of type

- `simple`: `type_params.measure` (a name, or `{name, filter, fill_nulls_with}`)
  gives AGG(expr), e.g. SUM(enrolled_merchants);
- `ratio`: `type_params.numerator` / `denominator` (metric names, or `{name, filter}`)
  gives a ratio of the aggregates, never an aggregate of ratios:
  CAST(SUM(par30_balance) AS DOUBLE PRECISION) / NULLIF(SUM(outstanding_balance), 0).
  The cast keeps PostgreSQL from dividing integers; NULLIF gives null, not an error,
  where the denominator is 0 (kpis.md: dividing by zero gives null);
- `derived`: `type_params.expr` over `type_params.metrics` (each a name or `{name, alias}`)
  of the same table, substituted as SQL.

A metric's `filter` (`{{ Dimension('entity__column') }} = 'x'`, TimeDimension, Entity) becomes
a CASE WHEN inside the aggregate. `cumulative` and `conversion` metrics have no single
aggregate expression a BI tool can take (a running total needs a window over dates):
they are left out, and docs/bi.md says so.

It returns, per published table, Superset's metric definitions (metric_name, expression,
verbose_name, description, d3format, warning_text) as a dataset export lists them. It
imports nothing but PyYAML, so it runs in either virtual environment."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from program_reporting.core.settings import DBT_PROJECT_DIR

log = logging.getLogger(__name__)

SEMANTIC_DIR = DBT_PROJECT_DIR / "models" / "semantic"

# MetricFlow's aggregations as SQL over an expression; the ones a BI aggregate cannot
# express the same way (median, percentile) are refused rather than approximated.
AGGREGATIONS = {
    "sum": "SUM({})",
    "min": "MIN({})",
    "max": "MAX({})",
    "average": "AVG({})",
    "count": "COUNT({})",
    "count_distinct": "COUNT(DISTINCT {})",
    "sum_boolean": "SUM(CASE WHEN {} THEN 1 ELSE 0 END)",
}
LEFT_OUT = ("cumulative", "conversion")
_REF = re.compile(r"""ref\(\s*['"]([A-Za-z0-9_]+)['"]\s*\)""")
_JINJA_REF = re.compile(r"""\{\{\s*(Dimension|TimeDimension|Entity)\(\s*['"]([A-Za-z0-9_]+)['"][^)]*\)\s*\}\}""")
_STOCK_WARNING = (
    "A stock: its value on one date. Sum it across programs or segments on the same date, "
    "never over dates (keep the day grain)."
)


class SemanticLayerError(ValueError):
    """The semantic layer's YAML names something it does not define, or uses what no BI
    aggregate can express."""


@dataclass
class _Model:
    name: str
    table: str
    columns: dict[str, str] = field(default_factory=dict)  # dimension or entity name -> SQL


@dataclass
class _Measure:
    model: _Model
    agg: str
    expr: str
    non_additive: bool


def dataset_metrics(
    semantic_dir: Path = SEMANTIC_DIR, columns: dict[str, set[str]] | None = None
) -> dict[str, list[dict]]:
    """Superset metrics per published table, generated from the semantic layer in
    `semantic_dir` (every *.yml and *.yaml below it), in the semantic layer's order.

    `columns` (table -> its column names) lets a metric be offered on every table that has
    the columns its measures use, not only on the table of its semantic model: kpis.md
    makes kpi_segment_daily sum exactly to kpi_program_daily, so enrolled_merchants means
    the same figure on both, and PAR90 (whose balance only kpi_program_daily publishes)
    divides by the outstanding balance of that table. Without `columns`, a metric lives
    only on its semantic model's table. A metric no table can compute (with or without
    `columns`) is left out with a warning; tables without a metric are absent."""
    layer = _Layer(*_read(semantic_dir), columns=columns)
    tables = list(columns) if columns is not None else list(dict.fromkeys(m.table for m in layer.models.values()))
    out: dict[str, list[dict]] = {}
    for name, spec in layer.metrics.items():
        kind = spec.get("type", "simple")
        if kind in LEFT_OUT:
            continue
        homes = 0
        for table in tables:
            try:
                sql, stock = layer.sql(name, table)
            except _NotOnTable:
                continue
            homes += 1
            unit = ((spec.get("config") or {}).get("meta") or {}).get("unit") or (spec.get("meta") or {}).get("unit")
            out.setdefault(table, []).append(
                {
                    "metric_name": name,
                    "verbose_name": spec.get("label") or None,
                    "expression": sql,
                    "description": " ".join((spec.get("description") or "").split()) or None,
                    # A rate reads as a percentage; money and counts keep Superset's default.
                    "d3format": ",.2%" if unit == "rate" or (kind == "ratio" and unit is None) else None,
                    # Superset shows this beside the metric wherever it is picked.
                    "warning_text": _STOCK_WARNING if stock else None,
                    "metric_type": kind,
                }
            )
        if not homes:
            log.warning("metric %s: no one table has every column it uses (%s); left out", name, ", ".join(tables))
    return out


def _read(semantic_dir: Path) -> tuple[dict[str, _Model], dict[str, _Measure], dict[str, dict]]:
    files = sorted([*Path(semantic_dir).rglob("*.yml"), *Path(semantic_dir).rglob("*.yaml")])
    if not files:
        raise SemanticLayerError(f"no semantic-layer YAML under {semantic_dir}")
    models: dict[str, _Model] = {}
    measures: dict[str, _Measure] = {}
    metrics: dict[str, dict] = {}
    for path in files:
        doc = yaml.safe_load(path.read_text()) or {}
        for sm in doc.get("semantic_models") or []:
            ref = _REF.search(str(sm.get("model", "")))
            if not ref:
                raise SemanticLayerError(f"{path.name}: semantic model {sm.get('name')!r} has no model: ref('...')")
            model = _Model(sm["name"], ref.group(1))
            for item in [*(sm.get("entities") or []), *(sm.get("dimensions") or [])]:
                model.columns[item["name"]] = str(item.get("expr") or item["name"])
            models[model.name] = model
            for m in sm.get("measures") or []:
                agg = str(m.get("agg", "")).lower()
                if agg not in AGGREGATIONS:
                    raise SemanticLayerError(
                        f"measure {m['name']!r}: aggregation {agg!r} has no BI equivalent "
                        f"(supported: {', '.join(AGGREGATIONS)})"
                    )
                if m["name"] in measures:
                    raise SemanticLayerError(f"measure {m['name']!r} is defined twice")
                expr = m.get("expr")
                measures[m["name"]] = _Measure(
                    model,
                    agg,
                    str(expr if expr not in (None, "") else m["name"]),
                    bool(m.get("non_additive_dimension")),
                )
        for metric in doc.get("metrics") or []:
            if metric["name"] in metrics:
                raise SemanticLayerError(f"metric {metric['name']!r} is defined twice")
            metrics[metric["name"]] = metric
    return models, measures, metrics


def _name(ref) -> str:
    return ref if isinstance(ref, str) else ref["name"]


def _filters(ref) -> tuple[str, ...]:
    if isinstance(ref, str) or not ref.get("filter"):
        return ()
    value = ref["filter"]
    return (value,) if isinstance(value, str) else tuple(value)


class _NotOnTable(Exception):
    """A metric uses a measure that this table cannot compute."""


_SQL_WORDS = {
    "and", "or", "not", "null", "is", "in", "case", "when", "then", "else", "end", "as", "between",
    "like", "ilike", "true", "false", "distinct", "cast", "double", "precision", "numeric", "integer",
    "bigint", "decimal", "date", "interval", "day", "month", "year",
}  # fmt: skip


def _identifiers(sql: str) -> set[str]:
    """The column names an expression reads: its words, less string literals, function
    names (a word followed by a parenthesis) and SQL's own words."""
    text = re.sub(r"'(?:[^']|'')*'", " ", sql)
    return {word for word in re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b(?!\s*\()", text) if word.lower() not in _SQL_WORDS}


@dataclass
class _Layer:
    models: dict[str, _Model]
    measures: dict[str, _Measure]
    metrics: dict[str, dict]
    columns: dict[str, set[str]] | None = None

    def sql(
        self, name: str, table: str, filters: tuple[str, ...] = (), stack: tuple[str, ...] = ()
    ) -> tuple[str, bool]:
        """(SQL over `table`, is a stock) of a metric, with `filters` (of a metric that uses
        it) applied inside its aggregates. Raises _NotOnTable where `table` lacks a column."""
        if name not in self.metrics:
            raise SemanticLayerError(f"metric {stack[-1] if stack else name!r} refers to undefined metric {name!r}")
        if name in stack:
            raise SemanticLayerError(f"metric {name!r} refers to itself through {' -> '.join(stack)}")
        spec, stack = self.metrics[name], (*stack, name)
        kind = spec.get("type", "simple")
        params = spec.get("type_params") or {}
        filters = (*filters, *_filters(spec))
        if kind == "simple":
            ref = params.get("measure")
            if ref is None or _name(ref) not in self.measures:
                raise SemanticLayerError(f"metric {name!r}: measure {ref and _name(ref)!r} is not defined")
            measure = self.measures[_name(ref)]
            fill = None if isinstance(ref, str) else ref.get("fill_nulls_with")
            sql = _aggregate(measure, (*filters, *_filters(ref)), fill)
            if measure.model.table != table and (
                self.columns is None or not _identifiers(sql) <= set(self.columns.get(table, ()))
            ):
                raise _NotOnTable(name)
            return sql, measure.non_additive
        if kind == "ratio":
            sides = []
            for side in ("numerator", "denominator"):
                ref = params.get(side)
                if ref is None:
                    raise SemanticLayerError(f"ratio metric {name!r} has no {side}")
                sides.append(self.sql(_name(ref), table, (*filters, *_filters(ref)), stack))
            (num, s1), (den, s2) = sides
            return f"CAST({num} AS DOUBLE PRECISION) / NULLIF({den}, 0)", s1 or s2
        if kind == "derived":
            expr, stock = str(params.get("expr") or ""), False
            for ref in params.get("metrics") or []:
                if not isinstance(ref, str) and ref.get("offset_window"):
                    raise SemanticLayerError(f"derived metric {name!r}: offset_window has no BI aggregate")
                sql, s = self.sql(_name(ref), table, (*filters, *_filters(ref)), stack)
                stock = stock or s
                alias = ref if isinstance(ref, str) else (ref.get("alias") or ref["name"])
                expr = re.sub(rf"\b{re.escape(alias)}\b", lambda _m, sql=sql: f"({sql})", expr)
            return expr, stock
        if kind in LEFT_OUT:
            raise _NotOnTable(name)
        raise SemanticLayerError(f"metric {name!r}: type {kind!r} is not supported")


def _filter_sql(filters: tuple[str, ...], model: _Model) -> str | None:
    """A MetricFlow filter ({{ Dimension('segment__region') }} = 'CN-GD') as SQL over the table."""
    if not filters:
        return None

    def column(match: re.Match) -> str:
        name = match.group(2).split("__")[-1]
        if name not in model.columns:
            raise SemanticLayerError(f"filter names {match.group(2)!r}, not a dimension of {model.name!r}")
        return model.columns[name]

    return " AND ".join(f"({_JINJA_REF.sub(column, f)})" for f in filters)


def _aggregate(measure: _Measure, filters: tuple[str, ...], fill_nulls_with=None) -> str:
    condition = _filter_sql(filters, measure.model)
    expr = measure.expr
    if condition and measure.agg == "sum_boolean":
        expr = f"{condition} AND ({expr})"
    elif condition:
        expr = f"CASE WHEN {condition} THEN {expr} END"
    sql = AGGREGATIONS[measure.agg].format(expr)
    return sql if fill_nulls_with is None else f"COALESCE({sql}, {fill_nulls_with})"
