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
  arg_min_null({{ value }}, {{ order_by }})
{%- endmacro %}

{#- `where`: an aggregate FILTER condition (PostgreSQL attaches FILTER to the
    aggregate call, inside the array subscript). -#}
{% macro last_by(value, order_by, where=none) -%}
  {{ return(adapter.dispatch('last_by', 'program_reporting')(value, order_by, where)) }}
{%- endmacro %}

{% macro default__last_by(value, order_by, where) -%}
  (array_agg({{ value }} order by {{ order_by }} desc){% if where %} filter (where {{ where }}){% endif %})[1]
{%- endmacro %}

{% macro duckdb__last_by(value, order_by, where) -%}
  arg_max_null({{ value }}, {{ order_by }}){% if where %} filter (where {{ where }}){% endif %}
{%- endmacro %}

{#- PostgreSQL has no IGNORE NULLS: the window's non-null values as an array
    (FILTER on a window aggregate), and its last element. -#}
{% macro postgres__carry_forward(expr, window) -%}
  (array_agg({{ expr }}) filter (where {{ expr }} is not null) over {{ window }})[count({{ expr }}) over {{ window }}]
{%- endmacro %}

{#- Spark: IGNORE NULLS is last_value's second argument; min_by/max_by keep the
    value of the first/last row even when it is null, as DuckDB's *_null do.
    A row expression (a, b) is a struct, compared field by field. -#}
{% macro spark__carry_forward(expr, window) -%}
  last_value({{ expr }}, true) over {{ window }}
{%- endmacro %}

{% macro spark__first_by(value, order_by) -%}
  min_by({{ value }}, {{ spark_row(order_by) }})
{%- endmacro %}

{% macro spark__last_by(value, order_by, where) -%}
  max_by({{ value }}, {{ spark_row(order_by) }}){% if where %} filter (where {{ where }}){% endif %}
{%- endmacro %}

{#- `(a, b)` as a Spark struct (a single column stays itself). -#}
{% macro spark_row(order_by) -%}
  {%- set text = order_by | trim -%}
  {%- if text.startswith('(') and text.endswith(')') and ',' in text -%}
    struct{{ text }}
  {%- else -%}
    {{ text }}
  {%- endif -%}
{%- endmacro %}
