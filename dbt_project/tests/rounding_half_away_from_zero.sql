-- kpis.md: published figures are rounded half away from zero. Checks the
-- warehouse's own arithmetic (div_round, round_money) on ties of both signs.
-- Fails the build.
{{ config(severity = 'error') }}
with cases as (
    select
        {{ round_money("cast('2.345' as decimal(18, 3))") }} as pos_money,
        {{ round_money("cast('-2.345' as decimal(18, 3))") }} as neg_money,
        {{ div_round("cast('1.00' as decimal(18, 2))", "cast('8.00' as decimal(18, 2))", 2) }} as pos_div,
        {{ div_round("cast('-1.00' as decimal(18, 2))", "cast('8.00' as decimal(18, 2))", 2) }} as neg_div,
        {{ div_round("cast('3.00' as decimal(18, 2))", "cast('0.00' as decimal(18, 2))", 6) }} as zero_den,
        {{ div_round('2', '3', 6, num_scale=0, den_scale=0) }} as two_thirds,
        {{ div_round("cast('0.00000365' as decimal(38, 8))", '365', 2, num_scale=8, den_scale=0) }} as tiny,
        {{ div_round("cast('1.82500000' as decimal(38, 8))", '365', 2, num_scale=8, den_scale=0) }} as half_cent
)

select *
from cases
where pos_money <> 2.35
    or neg_money <> -2.35
    or pos_div <> 0.13       -- 0.125
    or neg_div <> -0.13      -- -0.125
    or zero_den is not null
    or two_thirds <> 0.666667
    or tiny <> 0.00
    or half_cent <> 0.01     -- 1.825 / 365 = 0.005
