{#- The plan of one nightly build (restate_from, reload_from, new_rows_since,
    loaded_through_before; program_reporting.warehouse.build.plan_build). The build
    writes it into the table _build_plan for the length of its `dbt build`
    and removes it afterwards; models read it when they run. Passed as --vars
    instead, a new plan every night would make dbt parse the whole project
    again (a change of vars turns partial parsing off). Without that table (a
    hand-run `dbt build`), the var of the same name decides, then its default. -#}
{% macro build_plan(name) -%}
  {%- set fallback = var(name, none) -%}
  {%- if not execute -%}{{ return(fallback) }}{%- endif -%}
  {%- set relation = adapter.get_relation(database=target.database, schema=target.schema,
                                          identifier='_build_plan') -%}
  {%- if relation is none -%}{{ return(fallback) }}{%- endif -%}
  {%- set result = run_query("select value from " ~ relation ~ " where name = '" ~ name ~ "'") -%}
  {%- if result.rows | length == 0 -%}{{ return(fallback) }}{%- endif -%}
  {{ return(result.rows[0][0]) }}
{%- endmacro %}

{#- A data test's `where` config is rendered when dbt parses the project, so a
    plan value cannot be written there as Jinja: the config names it as
    __restate_from__, __reload_from__ or __reports_reload_from__, and this
    override of dbt's get_where_subquery (dbt's own default, plus the
    substitutions) puts the build's date in when the test runs. -#}
{% macro default__get_where_subquery(relation) -%}
  {%- set where = config.get('where', '') -%}
  {%- if where -%}
    {#- a placeholder's value is read only when the test names it (a query each) -#}
    {%- set fills = {'__restate_from__': restate_from, '__reload_from__': reload_from,
                     '__reports_reload_from__': reports_reload_from,
                     '__restated_report_merchants__': restated_report_merchants,
                     '__restated_credit_lines__': restated_credit_lines} -%}
    {%- set filled = namespace(where=where) -%}
    {%- for placeholder, fill in fills.items() if placeholder in filled.where -%}
      {%- set filled.where = filled.where | replace(placeholder, fill()) -%}
    {%- endfor -%}
    {%- set where = filled.where -%}
    {%- set filtered -%}
      (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- endset -%}
    {{ return(filtered) }}
  {%- else -%}
    {{ return(relation) }}
  {%- endif -%}
{%- endmacro %}

{#- A condition on `key`: the keys listed in the model `restates`, whose rows
    this build rebuilt (every other key keeps rows its own build tested), or
    true when it rebuilt every key. Read through get_relation: a test may not
    ref a model it does not depend on. -#}
{% macro rebuilt_keys(key, restates, by_key) -%}
  {%- if by_key -%}
    {%- set relation = adapter.get_relation(database=target.database, schema=target.schema,
                                            identifier=restates) -%}
    {{ key }} in (select {{ key }} from {{ relation }})
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}

{#- The lines this build rebuilt (int_credit_line_states): line by line, those
    of int_credit_line_restates. At 5,000,000 merchants a test of every line's
    rows since restate_from (57M rows) ran out of the 4GB memory limit inside
    the nightly build. -#}
{% macro restated_credit_lines() -%}
  {{ rebuilt_keys('credit_line_id', 'int_credit_line_restates', restate_lines_by_line()) }}
{%- endmacro %}

{#- The merchants whose effective employment reports this build recomputed
    (int_employment_reports_effective): by merchant, those of
    int_employment_report_restates. -#}
{% macro restated_report_merchants() -%}
  {{ rebuilt_keys('merchant_id', 'int_employment_report_restates', restate_reports_by_merchant()) }}
{%- endmacro %}
