"""The semantic layer's metrics as SQL over the published tables: one source of truth for every formula.

The metrics are defined once, in the dbt semantic layer (dbt_project/models/semantic/, one YAML per
semantic model, validated by MetricFlow: docs/semantic-layer.md). A tool that does not speak
MetricFlow, a BI tool's dataset metrics for instance (bi/metrics.py maps these to Superset's), needs
the same formulas as plain SQL aggregates over a published table's columns. `metric_sql()` reads
the YAML (no dbt run, no database: only the files; it imports nothing but PyYAML) and writes each
metric's formula from its definition. It is the project's one translator of that YAML into SQL:

    >>> metrics = metric_sql()
    >>> metrics["par30_rate"].sql
    'CAST(SUM(par30_balance) AS DOUBLE PRECISION) / NULLIF(SUM(outstanding_balance), 0)'
    >>> metrics["par30_rate"].tables
    ('kpi_program_daily', 'kpi_segment_daily')
    >>> metrics["par90_rate"].sql
    'CAST(SUM(par90_rate * outstanding_balance) AS DOUBLE PRECISION) / NULLIF(SUM(outstanding_balance), 0)'
    >>> metrics["par90_rate"].tables
    ('kpi_program_daily',)
    >>> metrics["jobs_retained_target"].sql
    "SUM(CASE WHEN (metric = 'jobs_retained') THEN target_value END)"

The SQL is a ratio of sums, never an average of rates, and runs on DuckDB and PostgreSQL alike: the
numerator is cast to DOUBLE PRECISION because PostgreSQL divides integers as integers (the SUM of an
INTEGER column is a bigint), and NULLIF gives null, not an error, on a zero denominator (kpis.md).
Every figure but goods_purchased_on_day is a stock at the end of as_of_date: its SQL is right over
the rows of one date (group or filter by as_of_date), and adding the rows of several dates gives a
meaningless number (`adds_over_dates` says which may). Money is in the program's currency: never add
it across programs of different currencies. MetricFlow does the same sums and then no rounding;
the published tables round rates half away from zero to 6 decimals and money to 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from program_reporting.core.settings import DBT_PROJECT_DIR

SEMANTIC_DIR = DBT_PROJECT_DIR / "models" / "semantic"
MODELS_DIR = DBT_PROJECT_DIR / "models"
# kpis.md's published tables: the formulas are written over their columns
PUBLISHED_TABLES = ("kpi_program_daily", "kpi_segment_daily", "kpi_target_progress")

_AGGREGATES = {"sum": "SUM({})", "max": "MAX({})", "min": "MIN({})", "average": "AVG({})", "count": "COUNT({})"}
_REF = re.compile(r"""^\s*ref\(\s*['"]([A-Za-z0-9_]+)['"]\s*\)\s*$""")
_DIMENSION = re.compile(r"""\{\{\s*Dimension\(\s*['"]([A-Za-z0-9_]+)['"]\s*\)\s*\}\}""")
_TEMPLATE = re.compile(r"\{\{.*?\}\}")
_IDENTIFIER = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()")
_SQL_WORDS = {"and", "or", "not", "case", "when", "then", "else", "end", "null", "is", "in", "as", "cast", "like"}


class SemanticLayerError(ValueError):
    """A definition this module cannot turn into SQL; the message names the file and the metric."""


@dataclass(frozen=True)
class MetricSQL:
    """One metric of the semantic layer as SQL.

    name: the metric's name (MetricFlow's `--metrics` name); a metric named like a column of
        kpi_program_daily gives that column's published figure by program and as_of_date.
    label, description: as defined in the YAML, for display.
    type: "simple", "ratio" or "cumulative" (MetricFlow's metric type).
    unit: "count", "money" (the program's currency), "rate" (a fraction, 0.25 = 25%) or
        "target" (the unit of the figure a target is about: group by the target's metric).
    sql: an aggregate expression over one published table's columns, to put in a SELECT that
        groups by the dimensions wanted, e.g. 'SUM(enrolled_merchants)'. None for a cumulative
        metric: a running sum over dates, which no aggregate over rows gives.
    tables: the tables that have every column `sql` reads (for a cumulative metric, those of the
        figure it accumulates), in the order of metric_sql()'s `columns`: a metric is offered on each.
    adds_over_dates: True when the rows of several dates may be added up (a flow such as
        goods_purchased_on_day); False for a stock or a ratio of stocks, whose SQL is right over the
        rows of one as_of_date only.
    source: the YAML file that defines the metric.
    """

    name: str
    label: str
    description: str
    type: str
    unit: str
    sql: str | None
    tables: tuple[str, ...]
    adds_over_dates: bool
    source: Path


@dataclass(frozen=True)
class _Measure:
    name: str
    sql: str  # the aggregate of its expression, e.g. SUM(par30_balance)
    expr: str
    dimensions: dict[str, str]  # `entity__dimension` of its semantic model -> its SQL expression
    additive: bool  # no non_additive_dimension
    source: Path


def metric_sql(
    semantic_dir: Path = SEMANTIC_DIR, models_dir: Path = MODELS_DIR, columns: dict[str, set[str]] | None = None
) -> dict[str, MetricSQL]:
    """Every metric of the semantic layer (the YAML files of semantic_dir) as SQL, in the order they
    are defined, with the tables it can be computed on: those of `columns` (table -> its column
    names, e.g. a BI tool's datasets) that have every column it reads; by default the published
    tables with their columns as the model YAML files under models_dir declare them. A metric is
    not tied to its semantic model's table: kpis.md makes kpi_segment_daily sum exactly to
    kpi_program_daily, so enrolled_merchants is the same figure on both. Raises SemanticLayerError,
    naming the file and the metric, on a definition it cannot translate or that no table can compute."""
    files = sorted(semantic_dir.glob("*.yml"))
    if not files:
        raise SemanticLayerError(f"{semantic_dir}: no semantic layer YAML")
    documents = [(path, yaml.safe_load(path.read_text()) or {}) for path in files]
    if columns is None:
        columns = _published_columns(models_dir)
    measures: dict[str, _Measure] = {}
    definitions: dict[str, tuple[Path, dict]] = {}
    for path, doc in documents:
        for model in doc.get("semantic_models") or []:
            for measure in _measures(path, model):
                if measure.name in measures:
                    raise SemanticLayerError(f"{path}: measure {measure.name} is defined twice")
                measures[measure.name] = measure
        for m in doc.get("metrics") or []:
            if m["name"] in definitions:
                raise SemanticLayerError(f"{path}: metric {m['name']} is defined twice")
            definitions[m["name"]] = (path, m)
    return {name: _metric(name, definitions, measures, columns) for name in definitions}


def _published_columns(models_dir: Path) -> dict[str, set[str]]:
    columns: dict[str, set[str]] = {}
    for path in sorted(models_dir.rglob("*.yml")):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models") or []:
            if model.get("name") in PUBLISHED_TABLES:
                columns[model["name"]] = {c["name"] for c in model.get("columns") or []}
    missing = [t for t in PUBLISHED_TABLES if t not in columns]
    if missing:
        raise SemanticLayerError(f"{models_dir}: no model YAML declares the columns of {', '.join(missing)}")
    return {t: columns[t] for t in PUBLISHED_TABLES}


def _measures(path: Path, model: dict) -> list[_Measure]:
    name = model.get("name", "?")
    ref = _REF.match(str(model.get("model", "")))
    if not ref or ref.group(1) not in PUBLISHED_TABLES:
        raise SemanticLayerError(
            f"{path}: semantic model {name} is on {model.get('model')!r}; only the published tables "
            f"({', '.join(PUBLISHED_TABLES)}) have SQL here"
        )
    prefix = model.get("primary_entity") or next(
        (e["name"] for e in model.get("entities") or [] if e.get("type") == "primary"), name
    )
    dimensions = {f"{prefix}__{d['name']}": str(d.get("expr") or d["name"]) for d in model.get("dimensions") or []}
    out = []
    for measure in model.get("measures") or []:
        agg = str(measure.get("agg", ""))
        if agg not in _AGGREGATES:
            # median, percentile, count_distinct, sum_boolean: no metric of ours uses them
            raise SemanticLayerError(f"{path}: measure {measure['name']}: aggregation {agg!r} has no SQL here")
        expr = str(measure.get("expr") or measure["name"])
        out.append(
            _Measure(
                name=measure["name"],
                sql=_AGGREGATES[agg].format(expr),
                expr=expr,
                dimensions=dimensions,
                additive=not measure.get("non_additive_dimension"),
                source=path,
            )
        )
    return out


def _metric(
    name: str, definitions: dict, measures: dict[str, _Measure], columns: dict[str, set[str]], stack: tuple = ()
) -> MetricSQL:
    path, m = definitions[name]
    if name in stack:
        raise SemanticLayerError(f"{path}: metric {name}: refers to itself through {' -> '.join((*stack, name))}")
    kind = m.get("type")
    params = m.get("type_params") or {}
    if kind in ("simple", "cumulative"):
        measure = _measure_of(path, name, params, measures)
        filters = _filters(m.get("filter")) + _filters(_input_filter(params))
        if kind == "simple":
            sql, read = _filtered(path, name, measure, filters), [measure.expr, *filters]
        else:
            sql, read = None, [measure.expr]
        additive = measure.additive and kind == "simple"
        tables = _tables(read, measure, columns)
        if not tables:
            raise SemanticLayerError(
                f"{path}: metric {name}: no published table ({', '.join(columns)}) has every column it reads"
            )
    elif kind == "ratio":
        if m.get("filter"):
            raise SemanticLayerError(f"{path}: metric {name}: a filter on a ratio metric has no SQL here")
        parts = []
        for side in ("numerator", "denominator"):
            input_name = _input(path, name, side, params.get(side), allowed=("name",))
            if not input_name or input_name not in definitions:
                raise SemanticLayerError(f"{path}: metric {name}: {side} {input_name!r} is not a metric")
            parts.append(_metric(input_name, definitions, measures, columns, (*stack, name)))
        numerator, denominator = parts
        if numerator.sql is None or denominator.sql is None:
            raise SemanticLayerError(f"{path}: metric {name}: a ratio of a cumulative metric has no SQL here")
        sql = f"CAST({numerator.sql} AS DOUBLE PRECISION) / NULLIF({denominator.sql}, 0)"
        tables = tuple(t for t in numerator.tables if t in denominator.tables)
        additive = numerator.adds_over_dates and denominator.adds_over_dates
        if not tables:
            raise SemanticLayerError(f"{path}: metric {name}: no one table has both its numerator and denominator")
    else:
        # derived and conversion metrics: no metric of ours is one
        raise SemanticLayerError(f"{path}: metric {name}: type {kind!r} has no SQL here")
    unit = ((m.get("config") or {}).get("meta") or {}).get("unit") or (m.get("meta") or {}).get("unit")
    if unit not in ("count", "money", "rate", "target"):
        raise SemanticLayerError(
            f"{path}: metric {name}: config.meta.unit is {unit!r}, not count, money, rate or target"
        )
    return MetricSQL(
        name=name,
        label=str(m.get("label", name)),
        description=" ".join(str(m.get("description", "")).split()),
        type=kind,
        unit=unit,
        sql=sql,
        tables=tables,
        adds_over_dates=additive,
        source=path,
    )


def _input(path: Path, name: str, what: str, ref, allowed: tuple[str, ...]) -> str | None:
    """The name an input of a metric refers to (a name, or a mapping with `name`). What else the
    mapping sets, other than `allowed`, would change the figure (fill_nulls_with, a filter on a
    ratio's side): refused rather than dropped."""
    if not isinstance(ref, dict):
        return ref
    extra = sorted(k for k, v in ref.items() if k not in allowed and v is not None and v is not False)  # 0 counts
    if extra:
        raise SemanticLayerError(f"{path}: metric {name}: {', '.join(extra)} on its {what} has no SQL here")
    return ref.get("name")


def _measure_of(path: Path, name: str, params: dict, measures: dict[str, _Measure]) -> _Measure:
    measure_name = _input(path, name, "measure", params.get("measure"), allowed=("name", "filter"))
    if measure_name not in measures:
        raise SemanticLayerError(f"{path}: metric {name}: measure {measure_name!r} is not defined")
    return measures[measure_name]


def _input_filter(params: dict):
    ref = params.get("measure")
    return ref.get("filter") if isinstance(ref, dict) else None


def _filters(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _filtered(path: Path, name: str, measure: _Measure, filters: list[str]) -> str:
    """The measure's aggregate, over the rows its filters keep: SUM(CASE WHEN cond THEN expr END)."""
    if not filters:
        return measure.sql
    conditions = " AND ".join(f"({_render(path, name, measure, f)})" for f in filters)
    aggregate = measure.sql[: measure.sql.index("(")]
    return f"{aggregate}(CASE WHEN {conditions} THEN {measure.expr} END)"


def _render(path: Path, name: str, measure: _Measure, template: str) -> str:
    def column(match: re.Match) -> str:
        if match.group(1) not in measure.dimensions:
            raise SemanticLayerError(
                f"{path}: metric {name}: filter on {match.group(1)}, not a dimension of the measure's semantic model"
            )
        return measure.dimensions[match.group(1)]

    sql = _DIMENSION.sub(column, template)
    if _TEMPLATE.search(sql):
        raise SemanticLayerError(f"{path}: metric {name}: filter {template!r} has no SQL here (only Dimension(...))")
    return sql.strip()


def _tables(expressions: list[str], measure: _Measure, columns: dict[str, set[str]]) -> tuple[str, ...]:
    read = set()
    for expression in expressions:
        sql = _DIMENSION.sub(lambda match: measure.dimensions.get(match.group(1), match.group(1)), expression)
        sql = re.sub(r"'[^']*'", "''", sql)  # string literals name no column
        read |= {w for w in _IDENTIFIER.findall(sql) if w.lower() not in _SQL_WORDS}
    return tuple(table for table, names in columns.items() if read <= set(names))
