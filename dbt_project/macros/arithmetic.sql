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

{#- Spark: DECIMAL / DECIMAL keeps at least 6 decimals, rounded, then rounding
    to `scale` would round twice. So the same integer rewrite as DuckDB's, in
    DECIMAL(38, 0) (no HUGEINT), with `div` (exact, to BIGINT) for the floor.
    Operands are cast to DECIMAL(26, s) so that a product by 10^k (k <= 11
    digits) needs no more than 38 digits: Spark would otherwise cut its scale. -#}
{% macro spark__div_round(num, den, scale, num_scale, den_scale) -%}
  {%- set k_num = num_scale + den_scale + scale -%}
  {%- set k_den = num_scale + den_scale -%}
  {%- set n -%}
    cast(cast({{ num }} as decimal(26, {{ num_scale }})) * cast({{ 10 ** k_num }} as decimal({{ k_num + 1 }}, 0)) as decimal(38, 0))
  {%- endset -%}
  {%- set d -%}
    cast(cast({{ den }} as decimal(26, {{ den_scale }})) * cast({{ 10 ** k_den }} as decimal({{ k_den + 1 }}, 0)) as decimal(38, 0))
  {%- endset -%}
  case when ({{ den }}) <> 0 then
    cast(
      cast(
        case when ({{ n }} < 0) <> ({{ d }} < 0) then -1 else 1 end
        * ((2 * abs({{ n }}) + abs({{ d }})) div (2 * abs({{ d }})))
      as decimal(38, 0))
      {%- if scale > 0 %}
      * cast('{{ '%.*f' | format(scale, 10 ** -scale) }}' as decimal({{ scale + 1 }}, {{ scale }}))
      {%- endif %}
    as decimal(38, {{ scale }}))
  end
{%- endmacro %}

{#- Round an exact DECIMAL half away from zero (DuckDB's and PostgreSQL's
    round() on DECIMAL/numeric both do; tested in tests/assert_rounding_half_away_from_zero.sql). -#}
{% macro round_money(x) -%}
  cast(round({{ x }}, 2) as decimal(18, 2))
{%- endmacro %}
