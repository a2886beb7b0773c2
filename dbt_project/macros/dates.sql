{#- The local calendar date of an instant in a program's time zone
    (kpis.md "Conventions": the date of a timestamp is its local date).
    `ts AT TIME ZONE tz` on a TIMESTAMPTZ gives the local wall-clock time in
    both DuckDB (ICU) and PostgreSQL. -#}
{% macro local_date(ts, tz) -%}
  {{ return(adapter.dispatch('local_date', 'program_reporting')(ts, tz)) }}
{%- endmacro %}

{% macro default__local_date(ts, tz) -%}
  cast(({{ ts }} at time zone {{ tz }}) as date)
{%- endmacro %}

{#- Spark has no AT TIME ZONE: from_utc_timestamp shifts the instant to the
    zone's wall clock as seen from UTC, the session time zone (profiles.yml). -#}
{% macro spark__local_date(ts, tz) -%}
  cast(from_utc_timestamp({{ ts }}, {{ tz }}) as date)
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

{#- The rows of a delivery source (credit_events, employment_reports) that this
    build reads from the raw layer, as a condition on a relation with the raw
    columns _ds and _landed_at (a staging table keeps them): every row of the
    partitions from the reload date on (reload_from, reports_reload_from), and
    the rows appended since the last build to older partitions whose only
    change is new releases of held orphans (plan append_from: the earliest such
    partition; append_since: the earliest of those releases, which stamp the
    released rows' _landed_at). Written `_ds >= append_from and (...)` so that
    the bound on _ds is a plain filter DuckDB skips row groups with. -#}
{% macro reread_rows(source_name) -%}
  {%- set rows = reread_bounds(source_name) -%}
  {%- if rows.append_from -%}
    (_ds >= {{ rows.append_from }} and (_ds >= {{ rows.reload_from }} or _landed_at >= {{ rows.append_since }}))
  {%- else -%}
    (_ds >= {{ rows.reload_from }})
  {%- endif -%}
{%- endmacro %}

{#- The rows reread_rows appends (none: the plan appends none), as a condition. -#}
{% macro appended_rows(source_name) -%}
  {%- set rows = reread_bounds(source_name) -%}
  {%- if rows.append_from -%}
    (_ds >= {{ rows.append_from }} and _ds < {{ rows.reload_from }} and _landed_at >= {{ rows.append_since }})
  {%- endif -%}
{%- endmacro %}

{#- The same rows of `relation` (the raw source), as a query: the partitions
    re-read, then the appended rows apart (UNION ALL). An OR of the two would
    be no filter on the scan of a Parquet file: DuckDB would read every row
    of the partition the releases joined (after a history delivered as one
    file, the whole history); apart, each scan skips the row groups outside
    its own bounds. -#}
{% macro reread_rows_of(source_name, relation) -%}
  {%- set rows = reread_bounds(source_name) -%}
  select * from {{ relation }} where _ds >= {{ rows.reload_from }}
  {%- if rows.append_from %}
  union all
  select * from {{ relation }} where {{ appended_rows(source_name) }}
  {%- endif -%}
{%- endmacro %}

{#- The plan's bounds of reread_rows as literals: reload_from, and
    append_from and append_since (none when the plan appends nothing). -#}
{% macro reread_bounds(source_name) -%}
  {%- set prefix = {'credit_events': '', 'employment_reports': 'reports_'}[source_name] -%}
  {%- set reload = reload_from() if source_name == 'credit_events' else reports_reload_from() -%}
  {%- set since = build_plan(prefix ~ 'append_since') -%}
  {%- if since is none -%}
    {{ return({'reload_from': reload, 'append_from': none, 'append_since': none}) }}
  {%- endif -%}
  {%- if not deletes_rows() -%}
    {#- no delete to replace a stored copy with an appended one: a partition given
        releases is re-read whole, as are those after it (append_from < reload_from) -#}
    {{ return({'reload_from': date_var(prefix ~ 'append_from'), 'append_from': none, 'append_since': none}) }}
  {%- endif -%}
  {{ return({'reload_from': reload, 'append_from': date_var(prefix ~ 'append_from'),
             'append_since': instant_var(prefix ~ 'append_since', since)}) }}
{%- endmacro %}

{#- Whether a nightly build recomputes the effective employment reports merchant
    by merchant (int_employment_report_restates): when staging re-read only some
    report partitions. After a re-delivery, and without a plan, every merchant. -#}
{% macro restate_reports_by_merchant() -%}
  {%- set value = build_plan('reports_reload_from') -%}
  {{ return(deletes_rows() and value is not none and value != start_of_time_ds()) }}
{%- endmacro %}

{#- The plan's date `name` as a DATE literal (value: already read from the plan). -#}
{% macro date_var(name, value=none) -%}
  {%- set value = (build_plan(name) if value is none else value) | string -%}
  {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', value) -%}
    {{ exceptions.raise_compiler_error("build plan " ~ name ~ " must be a date YYYY-MM-DD, got '" ~ value ~ "'") }}
  {%- endif -%}
  cast('{{ value }}' as date)
{%- endmacro %}

{#- The plan's instant `name` as a TIMESTAMPTZ literal (value: already read from the plan). -#}
{% macro instant_var(name, value=none) -%}
  {%- set value = (build_plan(name) if value is none else value) | string -%}
  {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}(:?\d{2})?|Z)$', value) -%}
    {{ exceptions.raise_compiler_error("build plan " ~ name ~ " must be an instant with an offset, got " ~ value) }}
  {%- endif -%}
  cast('{{ value }}' as {{ instant_type() }})
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

{% macro spark__date_series(start, end) -%}
  explode(sequence(cast({{ start }} as date), cast({{ end }} as date), interval 1 day))
{%- endmacro %}
