{#- The latest non-null value of `expr` over a window frame (a "carry
    forward"), e.g. a line's limit on every row after the event that set it.
    DuckDB: last_value(... IGNORE NULLS). PostgreSQL has no IGNORE NULLS for
    window functions; the count-group rewrite it needs is a second window, so
    the postgres target is not wired here yet. -#}
{% macro carry_forward(expr, window) -%}
  {{ return(adapter.dispatch('carry_forward', 'program_reporting')(expr, window)) }}
{%- endmacro %}

{% macro default__carry_forward(expr, window) -%}
  last_value({{ expr }} ignore nulls) over {{ window }}
{%- endmacro %}

{#- The value of `value` on the row with the smallest `order_by` (a row
    expression such as (event_at, event_id)) of each group. -#}
{% macro first_by(value, order_by) -%}
  {{ return(adapter.dispatch('first_by', 'program_reporting')(value, order_by)) }}
{%- endmacro %}

{% macro default__first_by(value, order_by) -%}
  (array_agg({{ value }} order by {{ order_by }}))[1]
{%- endmacro %}

{% macro duckdb__first_by(value, order_by) -%}
  arg_min({{ value }}, {{ order_by }})
{%- endmacro %}

{% macro last_by(value, order_by) -%}
  {{ return(adapter.dispatch('last_by', 'program_reporting')(value, order_by)) }}
{%- endmacro %}

{% macro default__last_by(value, order_by) -%}
  (array_agg({{ value }} order by {{ order_by }} desc))[1]
{%- endmacro %}

{% macro duckdb__last_by(value, order_by) -%}
  arg_max({{ value }}, {{ order_by }})
{%- endmacro %}
