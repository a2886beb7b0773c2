"""Stand-ins for what sqlfluff's jinja templater cannot render from the dbt project (see
/.sqlfluff): names that must return Python values, not text, so they cannot be the
[sqlfluff:templater:jinja:macros] stand-ins. As a package, its top-level names join the
templating context."""

from types import SimpleNamespace


def _get_relation(database=None, schema=None, identifier=None):
    return identifier


# dbt's `adapter` (int_employment_report_restates): a relation named by its identifier
adapter = SimpleNamespace(get_relation=_get_relation)


def deletes_rows():
    """macros/engine.sql: the embedded default deletes rows (DuckDB, PostgreSQL)."""
    return True


def restating_config(partition_by, pre_hook, restated_from=None):
    """macros/engine.sql: the config of a model that restates whole dates, as on DuckDB."""
    return {"incremental_strategy": "append", "pre_hook": pre_hook}
