{#- The local calendar date of an instant in a program's time zone
    (kpis.md "Conventions": the date of a timestamp is its local date).
    `ts AT TIME ZONE tz` on a TIMESTAMPTZ gives the local wall-clock time in
    both DuckDB (ICU) and PostgreSQL. -#}
{% macro local_date(ts, tz) -%}
  cast(({{ ts }} at time zone {{ tz }}) as date)
{%- endmacro %}

{#- Days since 2000-01-01: a small integer for the linear subsidy accumulator. -#}
{% macro day_number(d) -%}
  {{ dbt.datediff("cast('2000-01-01' as date)", d, 'day') }}
{%- endmacro %}

{% macro end_of_time() -%}cast('9999-12-31' as date){%- endmacro %}
{#- The first business date of all (program_reporting.warehouse.build.FULL_HISTORY): the plan's
    value for "every partition", and the date before which nothing is dated. -#}
{% macro start_of_time_ds() -%}{{ return('1900-01-01') }}{%- endmacro %}
{% macro start_of_time() -%}cast('{{ start_of_time_ds() }}' as date){%- endmacro %}

{#- The earliest business date this build restates (build_plan restate_from,
    which int_build_plan decides from the landing's reconciliation records). Incremental
    models delete and recompute everything dated on or after it. -#}
{% macro restate_from() -%}
  {{ date_var('restate_from') }}
{%- endmacro %}

{#- The earliest delivery partition (ds) of credit_events that changed since
    the last build (build_plan reload_from; restate_from when not set). Staging
    re-reads the partitions from it on: an event's date is never after its
    delivery's ds, so reload_from >= restate_from never loses a change, and an
    unchanged partition is not read again. -#}
{% macro reload_from() -%}
  {%- set value = build_plan('reload_from') -%}
  {{ date_var('reload_from', value) if value else restate_from() }}
{%- endmacro %}

{#- The earliest delivery partition (ds) of employment_reports with new rows
    since the last build (build_plan reports_reload_from): staging re-reads
    the partitions from it on. Without a plan (a hand-run dbt build), every
    partition. -#}
{% macro reports_reload_from() -%}
  {%- set value = build_plan('reports_reload_from') -%}
  {{ date_var('reports_reload_from', value) if value else start_of_time() }}
{%- endmacro %}

{#- Whether a nightly build recomputes the effective employment reports merchant
    by merchant (int_employment_report_restates): when staging re-read only some
    report partitions. After a re-delivery, and without a plan, every merchant. -#}
{% macro restate_reports_by_merchant() -%}
  {%- set value = build_plan('reports_reload_from') -%}
  {{ return(value is not none and value != start_of_time_ds()) }}
{%- endmacro %}

{#- The plan's date `name` as a DATE literal (value: already read from the plan). -#}
{% macro date_var(name, value=none) -%}
  {%- set value = (build_plan(name) if value is none else value) | string -%}
  {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', value) -%}
    {{ exceptions.raise_compiler_error("build plan " ~ name ~ " must be a date YYYY-MM-DD, got '" ~ value ~ "'") }}
  {%- endif -%}
  cast('{{ value }}' as date)
{%- endmacro %}

{#- The latest ds loaded by any source (int_program_periods.loaded_through), as
    a DATE literal read when the model runs: a bound DuckDB can prune row
    groups with, where a subquery would be evaluated row by row. -#}
{% macro latest_loaded_ds() -%}
  {%- if not execute -%}{{ return("cast(null as date)") }}{%- endif -%}
  {%- set result = run_query("select max(loaded_through) from " ~ ref('int_program_periods')) -%}
  {{ return("cast('" ~ result.rows[0][0] ~ "' as date)") }}
{%- endmacro %}

{#- A date plus n days, as a DATE (dbt.dateadd yields a timestamp on some adapters). -#}
{% macro add_days(n, d) -%}
  cast({{ dbt.dateadd('day', n, d) }} as date)
{%- endmacro %}

{#- Select-list expression expanding into one row per date from start to end
    (inclusive). Both DuckDB and PostgreSQL accept a set-returning
    generate_series in the select list; DuckDB needs unnest() around the list. -#}
{% macro date_series(start, end) -%}
  {{ return(adapter.dispatch('date_series', 'program_reporting')(start, end)) }}
{%- endmacro %}

{% macro default__date_series(start, end) -%}
  cast(generate_series(cast({{ start }} as timestamp), cast({{ end }} as timestamp), interval '1 day') as date)
{%- endmacro %}

{% macro duckdb__date_series(start, end) -%}
  cast(unnest(generate_series(cast({{ start }} as timestamp), cast({{ end }} as timestamp), interval '1 day')) as date)
{%- endmacro %}
