{#- Reading the landing's reconciliation records (JSON text) on either engine:
    DuckDB's json extension, PostgreSQL's json operators. Keys and paths are
    literals here. -#}

{#- The value of a top-level key as text (a JSON string unquoted, a number as
    written); NULL when the key is missing or null. -#}
{% macro json_text(doc, key) -%}
  {{ return(adapter.dispatch('json_text', 'program_reporting')(doc, key)) }}
{%- endmacro %}

{% macro default__json_text(doc, key) -%}
  (cast({{ doc }} as json) ->> '{{ key }}')
{%- endmacro %}

{% macro duckdb__json_text(doc, key) -%}
  json_extract_string({{ doc }}, '$.{{ key }}')
{%- endmacro %}

{% macro spark__json_text(doc, key) -%}
  get_json_object({{ doc }}, '$.{{ key }}')
{%- endmacro %}

{#- Whether the object has the key at all (also when its value is null). -#}
{% macro json_has_key(doc, key) -%}
  {{ return(adapter.dispatch('json_has_key', 'program_reporting')(doc, key)) }}
{%- endmacro %}

{% macro default__json_has_key(doc, key) -%}
  coalesce(cast({{ doc }} as jsonb) ? '{{ key }}', false)
{%- endmacro %}

{% macro duckdb__json_has_key(doc, key) -%}
  coalesce(json_exists({{ doc }}, '$.{{ key }}'), false)
{%- endmacro %}

{% macro spark__json_has_key(doc, key) -%}
  coalesce(array_contains(json_object_keys({{ doc }}), '{{ key }}'), false)
{%- endmacro %}

{#- A lateral join item: one row per element of the array under `key` of
    `doc` (none when it is missing or not an array), as `alias`(element,
    position), position counting from 1 in the array's order. -#}
{% macro json_array_rows(doc, key, alias) -%}
  {{ return(adapter.dispatch('json_array_rows', 'program_reporting')(doc, key, alias)) }}
{%- endmacro %}

{% macro default__json_array_rows(doc, key, alias) -%}
  cross join lateral json_array_elements(
      case when json_typeof(cast({{ doc }} as json) -> '{{ key }}') = 'array'
          then cast({{ doc }} as json) -> '{{ key }}' end
  ) with ordinality as {{ alias }} (element, position)
{%- endmacro %}

{% macro duckdb__json_array_rows(doc, key, alias) -%}
  cross join lateral (
      select value as element, cast(key as integer) + 1 as position
      from json_each({{ doc }}, '$.{{ key }}')
      where json_type({{ doc }}, '$.{{ key }}') = 'ARRAY'
  ) as {{ alias }}
{%- endmacro %}

{#- Spark: a LATERAL VIEW of the array's elements (as JSON text) with their positions. -#}
{% macro spark__json_array_rows(doc, key, alias) -%}
  lateral view inline(
      transform(
          coalesce(from_json(get_json_object({{ doc }}, '$.{{ key }}'), 'array<string>'), array()),
          (element, i) -> named_struct('element', element, 'position', i + 1)
      )
  ) {{ alias }} as element, position
{%- endmacro %}
