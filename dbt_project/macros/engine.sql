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

{#- The config of an incremental model that restates whole dates from `restated_from`
    (SQL of a date, rendered when the model runs): on a target that deletes, `append`
    after its pre_hooks delete what it restates; else `insert_overwrite` of the
    `partition_by` partitions it writes, after clear_partitions_from drops every stored
    partition from that date on. Dynamic overwrite alone replaces only the partitions the
    night writes: a date whose rows a correction removed altogether would keep them. -#}
{% macro restating_config(partition_by, pre_hook, restated_from) -%}
  {%- if deletes_rows() -%}
    {{ return({'incremental_strategy': 'append', 'pre_hook': pre_hook}) }}
  {%- else -%}
    {{ return({'incremental_strategy': 'insert_overwrite', 'partition_by': [partition_by],
               'pre_hook': ["{{ clear_partitions_from('" ~ partition_by ~ "', " ~ restated_from ~ ") }}"]}) }}
  {%- endif -%}
{%- endmacro %}

{#- Pre-hook on a target without DELETE: drop the stored partitions of `column` dated on
    or after `bound` (Spark's DROP PARTITION takes equalities only: one per date). What
    the hook runs itself is a no-op. -#}
{% macro clear_partitions_from(column, bound) -%}
  {%- if execute and is_incremental() -%}
    {%- set stored = run_query("select distinct cast(" ~ column ~ " as " ~ text_type() ~ ") from " ~ this
                               ~ " where " ~ column ~ " >= " ~ bound) -%}
    {%- for row in stored.rows -%}
      {%- do run_query("alter table " ~ this ~ " drop if exists partition (" ~ column ~ " = '" ~ row[0] ~ "')") -%}
    {%- endfor -%}
    {{ log(this ~ ": " ~ (stored.rows | length) ~ " partitions of " ~ column ~ " from " ~ bound ~ " cleared",
           info=True) }}
  {%- endif -%}
  select 1
{%- endmacro %}
