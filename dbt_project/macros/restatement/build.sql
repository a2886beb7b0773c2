{#- What a build knows about itself: whether it is a full refresh, the
    tables of the last build it can read, its budget of credit events per
    pass. The rules that use them are in deliveries.sql, merchants.sql and
    the models int_build_deliveries and int_build_plan. -#}

{#- Whether this build rebuilds everything (--full-refresh; the build passes
    it when the warehouse has no successful build yet). A macro, so that unit
    tests can set it. -#}
{% macro build_is_full_refresh() -%}
  {{ return(flags.FULL_REFRESH) }}
{%- endmacro %}

{#- A table of this project as the last build left it (NULL when missing),
    read without ref: the plan reads what a model held before this build
    rebuilds it (the model waits for the plan). -#}
{% macro previous_relation(identifier) -%}
  {%- if not execute -%}{{ return(none) }}{%- endif -%}
  {{ return(adapter.get_relation(database=this.database, schema=this.schema, identifier=identifier)) }}
{%- endmacro %}

{#- The credit events one pass of a full build of int_credit_line_states may
    read (PROGRAM_REPORTING_LINE_PASS_EVENTS, which the build sets on DuckDB
    from its memory limit: program_reporting.core.settings.line_pass_events),
    or none (one pass). Read when the model runs, never when dbt parses (an
    env var read at parse time would make dbt parse the model again when it
    changes). -#}
{% macro line_pass_events() -%}
  {%- if not execute -%}{{ return(none) }}{%- endif -%}
  {%- set value = env_var('PROGRAM_REPORTING_LINE_PASS_EVENTS', '') -%}
  {{ return(value | int if value else none) }}
{%- endmacro %}

{#- The passes a full build of int_credit_line_states makes over `events`
    stored credit events, at most `budget` each (macro line_passes); NULL
    without a budget (one pass). -#}
{% macro line_passes_for(events, budget) -%}
  {%- if budget is none -%}
    cast(null as integer)
  {%- else -%}
    cast(greatest(1, floor(({{ events }} + {{ budget - 1 }}) / {{ budget }})) as integer)
  {%- endif -%}
{%- endmacro %}

{#- new_rows_since when the last build saw every landing: nothing is new. -#}
{% macro nothing_new() -%}'9999-12-31T00:00:00+00:00'{%- endmacro %}

{#- Whether a landing time is an ISO 8601 instant with its offset (as landing
    writes them); any other text makes the night restate every line. -#}
{% macro is_iso_instant(text) -%}
  {%- set instant = '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?'
                    ~ '(Z|[+-][0-9]{2}:[0-9]{2})$' -%}
  coalesce({{ regex_matches(text, instant) }}, false)
{%- endmacro %}

{#- A SELECT of the dates on which a benchmark rate changes (column
    effective_from), as the seed benchmark_rates was loaded by the last build:
    read without ref, so that the plan runs before anything else and the
    staging models that wait for it start at once (a ref would make them
    wait for the seeds' tests too). Rates are reference data; after editing
    the seed, a full refresh (docs/warehouse.md). None loaded yet: none. -#}
{% macro benchmark_rate_dates() -%}
  {%- set rates = previous_relation('benchmark_rates') -%}
  {%- if rates is none -%}
    select cast(null as date) as effective_from where 1 = 0
  {%- else -%}
    select loaded_rates.effective_from from {{ rates }} as loaded_rates
  {%- endif -%}
{%- endmacro %}

{#- on-run-start: the build log's tables, when missing (the build writes
    their rows, _build_landings before dbt runs and the others after; the
    plan reads them). program_reporting.warehouse.build_log makes the same
    tables. -#}
{% macro create_build_log() -%}
  {{ return(adapter.dispatch('create_build_log', 'program_reporting')()) }}
{%- endmacro %}

{% macro default__create_build_log() -%}
  create table if not exists {{ target.schema }}._build_log (
      run_id varchar, ds date, restate_from date, full_refresh boolean, loaded_through date,
      started_at timestamptz, finished_at timestamptz, succeeded boolean
  );
  create table if not exists {{ target.schema }}._build_deliveries (source varchar, ds date, version varchar);
  create table if not exists {{ target.schema }}._build_landings (source varchar, ds varchar, record varchar, files varchar);
{%- endmacro %}

{#- Spark runs one statement at a time: the hook runs them itself. Before the
    build log, the raw layer's views (spark_raw_views). -#}
{% macro spark__create_build_log() -%}
  {%- if execute -%}
    {%- do spark_raw_views() -%}
    {%- do run_query('create schema if not exists ' ~ target.schema) -%}
    {%- do run_query('create table if not exists ' ~ target.schema ~ '._build_log (run_id string, ds date, '
                     ~ 'restate_from date, full_refresh boolean, loaded_through date, started_at timestamp, '
                     ~ 'finished_at timestamp, succeeded boolean) using parquet') -%}
    {%- do run_query('create table if not exists ' ~ target.schema ~ '._build_deliveries '
                     ~ '(source string, ds date, version string) using parquet') -%}
    {%- do run_query('create table if not exists ' ~ target.schema ~ '._build_landings '
                     ~ '(source string, ds string, record string, files string) using parquet') -%}
  {%- endif -%}
{%- endmacro %}

{#- The raw layer on Spark, read as the Parquet it is: views over the landed
    files (home/raw, or PROGRAM_REPORTING_SPARK_RAW_LOCATION where a cluster
    reads it), in the schema the source `raw` names there. A view lists the
    files again at every query, so each night sees the partitions landed since.
    `partitions` lists the data files (Spark's file listing skips names starting
    with `_`, so a partition's _reconciliation.json is not among them). -#}
{% macro spark_raw_views() -%}
  {%- set location = env_var('PROGRAM_REPORTING_SPARK_RAW_LOCATION', '')
                     or env_var('PROGRAM_REPORTING_HOME', '../data/warehouse') ~ '/raw' -%}
  {%- set schema = target.schema ~ '_raw' -%}  {#- the source raw's schema on Spark (_raw__sources.yml) -#}
  {%- do run_query('create schema if not exists ' ~ schema) -%}
  {%- for table in ['merchants', 'credit_events', 'employment_reports'] -%}
    {%- do run_query('create or replace view ' ~ schema ~ '.' ~ table ~ ' as select * from parquet.`'
                     ~ location ~ '/' ~ table ~ '/ds=*/*.parquet`') -%}
  {%- endfor -%}
  {%- do run_query('create or replace view ' ~ schema ~ '.partitions as select path as file from binaryFile.`'
                   ~ location ~ '/*/ds=*/*`') -%}
{%- endmacro %}
