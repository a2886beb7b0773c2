{#- Regular expressions: DuckDB has regexp_extract/regexp_matches, PostgreSQL
    substring(... from ...) and the ~ operator. Patterns are literals here. -#}
{% macro regex_extract(value, pattern, group=1) -%}
  {{ return(adapter.dispatch('regex_extract', 'program_reporting')(value, pattern, group)) }}
{%- endmacro %}

{% macro default__regex_extract(value, pattern, group) -%}
  {#- PostgreSQL returns the first parenthesised group: the pattern has exactly one. -#}
  substring({{ value }} from '{{ pattern }}')
{%- endmacro %}

{% macro duckdb__regex_extract(value, pattern, group) -%}
  regexp_extract({{ value }}, '{{ pattern }}', {{ group }})
{%- endmacro %}

{#- Spark: as DuckDB ('' when nothing matches). -#}
{% macro spark__regex_extract(value, pattern, group) -%}
  regexp_extract({{ value }}, '{{ pattern }}', {{ group }})
{%- endmacro %}

{% macro regex_matches(value, pattern) -%}
  {{ return(adapter.dispatch('regex_matches', 'program_reporting')(value, pattern)) }}
{%- endmacro %}

{% macro default__regex_matches(value, pattern) -%}
  ({{ value }} ~ '{{ pattern }}')
{%- endmacro %}

{% macro duckdb__regex_matches(value, pattern) -%}
  regexp_matches({{ value }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__regex_matches(value, pattern) -%}
  ({{ value }} rlike '{{ pattern }}')
{%- endmacro %}

{#- A 64-bit hash of a text value, for cheap grouping before an exact comparison. -#}
{% macro text_hash(value) -%}
  {{ return(adapter.dispatch('text_hash', 'program_reporting')(value)) }}
{%- endmacro %}

{% macro default__text_hash(value) -%}
  hashtextextended({{ value }}, 0)
{%- endmacro %}

{% macro duckdb__text_hash(value) -%}
  hash({{ value }})
{%- endmacro %}

{% macro spark__text_hash(value) -%}
  xxhash64({{ value }})
{%- endmacro %}

{#- A file path with forward slashes (Spark reads a backslash in a literal as an escape). -#}
{% macro forward_slashes(path) -%}
  {{ return(adapter.dispatch('forward_slashes', 'program_reporting')(path)) }}
{%- endmacro %}

{% macro default__forward_slashes(path) -%}
  replace({{ path }}, '\', '/')
{%- endmacro %}

{% macro spark__forward_slashes(path) -%}
  replace({{ path }}, chr(92), '/')
{%- endmacro %}
