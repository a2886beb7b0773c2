{#- A value of this build's restatement plan (the model int_build_plan:
    restate_from, reload_from, reports_reload_from, append_from, append_since,
    reports_append_from, reports_append_since, new_rows_since,
    loaded_through_before, line_passes), read when a model runs, after the plan
    (each model that asks waits for int_build_plan). dbt decides the plan from
    the landing's records and the build log, so nothing reaches dbt as --vars,
    which would make it parse the whole project again each night (a change of
    vars turns partial parsing off). When this invocation does not build the
    plan (a hand-run `dbt build --select` of some models), the var of the same
    name decides, then its default: restate everything. -#}
{% macro build_plan(name) -%}
  {%- set fallback = var(name, none) -%}
  {%- if not execute or 'model.program_reporting.int_build_plan' not in selected_resources -%}
    {{ return(fallback) }}
  {%- endif -%}
  {%- set relation = adapter.get_relation(database=target.database, schema=target.schema,
                                          identifier='int_build_plan') -%}
  {%- if relation is none -%}{{ return(fallback) }}{%- endif -%}
  {%- set result = run_query("select " ~ name ~ " from " ~ relation) -%}
  {%- set value = result.rows[0][0] if result.rows | length else none -%}
  {{ return(none if value is none else value | string) }}
{%- endmacro %}

{#- A data test's `where` config is rendered when dbt parses the project, so a
    plan value cannot be written there as Jinja: the config names it as
    __restate_from__ (a date), or __reread_credit_events__ or
    __reread_employment_reports__ (the condition of macro reread_rows: the
    rows staging re-read or appended), and this override of dbt's
    get_where_subquery (dbt's own default, plus the substitutions) puts the
    build's values in when the test runs. -#}
{% macro default__get_where_subquery(relation) -%}
  {%- set where = config.get('where', '') -%}
  {%- if where -%}
    {#- a placeholder's value is read only when the test names it (a query each) -#}
    {%- set fills = {'__restate_from__': restate_from,
                     '__reread_credit_events__': reread_credit_events,
                     '__reread_employment_reports__': reread_employment_reports,
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

{#- reread_rows of each source, for the placeholders above (which call fills without arguments). -#}
{% macro reread_credit_events() -%}{{ reread_rows('credit_events') }}{%- endmacro %}
{% macro reread_employment_reports() -%}{{ reread_rows('employment_reports') }}{%- endmacro %}

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
