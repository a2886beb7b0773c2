{#- Type names that differ between engines. DuckDB and PostgreSQL name text
    `varchar` and an instant `timestamptz`; Spark SQL has `string` (its
    `varchar` needs a length) and its `timestamp` is an instant (the session
    time zone only renders it, UTC in profiles.yml). -#}
{% macro text_type() -%}
  {{ return(adapter.dispatch('text_type', 'program_reporting')()) }}
{%- endmacro %}

{% macro default__text_type() -%}varchar{%- endmacro %}

{% macro spark__text_type() -%}string{%- endmacro %}

{% macro instant_type() -%}
  {{ return(adapter.dispatch('instant_type', 'program_reporting')()) }}
{%- endmacro %}

{% macro default__instant_type() -%}timestamptz{%- endmacro %}

{% macro spark__instant_type() -%}timestamp{%- endmacro %}

{#- Whether the target can delete rows of a table. Spark's plain Parquet tables
    cannot (no DELETE without Delta or Iceberg, whose jars no wheel ships):
    there the incremental models replace whole partitions instead
    (insert_overwrite, partition_config), and those whose nights delete by key
    (a report copy, a merchant) are rebuilt whole as tables. -#}
{% macro deletes_rows() -%}
  {{ return(adapter.dispatch('deletes_rows', 'program_reporting')()) }}
{%- endmacro %}

{% macro default__deletes_rows() -%}{{ return(true) }}{%- endmacro %}

{% macro spark__deletes_rows() -%}{{ return(false) }}{%- endmacro %}

{#- The config of an incremental model that restates whole dates: on a target
    that deletes, `append` after its pre_hooks delete what it restates; else
    `insert_overwrite` of the `partition_by` partitions it writes, without the hooks. -#}
{% macro restating_config(partition_by, pre_hook) -%}
  {%- if deletes_rows() -%}
    {{ return({'incremental_strategy': 'append', 'pre_hook': pre_hook}) }}
  {%- else -%}
    {{ return({'incremental_strategy': 'insert_overwrite', 'partition_by': [partition_by], 'pre_hook': []}) }}
  {%- endif -%}
{%- endmacro %}
