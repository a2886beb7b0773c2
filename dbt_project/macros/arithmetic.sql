{#- Exact division rounded half away from zero (kpis.md "round only the
    published figure, half away from zero"). A zero or null denominator gives
    null ("a rate whose denominator is 0 is null").

    num_scale / den_scale: the number of decimals the operands carry exactly
    (money 2, counts 0, the subsidy accumulator 8). The result is a DECIMAL
    with `scale` decimals. DuckDB turns DECIMAL / DECIMAL into DOUBLE, so the
    DuckDB version divides integers (HUGEINT) instead; PostgreSQL's numeric
    division and round() are exact enough and round half away from zero. -#}
{% macro div_round(num, den, scale, num_scale=2, den_scale=2) -%}
  {{ return(adapter.dispatch('div_round', 'program_reporting')(num, den, scale, num_scale, den_scale)) }}
{%- endmacro %}

{% macro default__div_round(num, den, scale, num_scale, den_scale) -%}
  round(cast({{ num }} as numeric) / nullif(cast({{ den }} as numeric), 0), {{ scale }})
{%- endmacro %}

{% macro duckdb__div_round(num, den, scale, num_scale, den_scale) -%}
  {%- set n -%}
    (cast(cast({{ num }} as decimal(38, {{ num_scale }})) * {{ 10 ** num_scale }} as hugeint) * cast({{ 10 ** (scale + den_scale) }} as hugeint))
  {%- endset -%}
  {%- set d -%}
    (cast(cast({{ den }} as decimal(38, {{ den_scale }})) * {{ 10 ** den_scale }} as hugeint) * cast({{ 10 ** num_scale }} as hugeint))
  {%- endset -%}
  case when ({{ den }}) <> 0 then
    cast(
      cast(sign({{ n }}) * sign({{ d }}) * ((2 * abs({{ n }}) + abs({{ d }})) // (2 * abs({{ d }}))) as decimal(38, 0))
      {%- if scale > 0 %} * cast('1e-{{ scale }}' as decimal(38, {{ scale }})){% endif %}
    as decimal(38, {{ scale }}))
  end
{%- endmacro %}

{#- Round an exact DECIMAL half away from zero (DuckDB's and PostgreSQL's
    round() on DECIMAL/numeric both do; tested in tests/assert_rounding_half_away_from_zero.sql). -#}
{% macro round_money(x) -%}
  cast(round({{ x }}, 2) as decimal(18, 2))
{%- endmacro %}
