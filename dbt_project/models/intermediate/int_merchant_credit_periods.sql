-- Periods in which a merchant has at least one open credit line
-- (kpis.md merchants_with_credit), from the open/close changes of its lines.
with changes as (
    select merchant_id, state_date, sum(delta_open_lines) as delta_open_lines
    from {{ ref('int_credit_line_states') }}
    where delta_open_lines <> 0
    group by merchant_id, state_date
),

counted as (
    select
        merchant_id,
        state_date,
        sum(delta_open_lines) over (
            partition by merchant_id order by state_date
            rows between unbounded preceding and current row
        ) as open_lines
    from changes
),

flagged as (
    select
        merchant_id,
        state_date,
        case when open_lines > 0 then 1 else 0 end as has_credit,
        lag(case when open_lines > 0 then 1 else 0 end, 1, 0) over (
            partition by merchant_id order by state_date
        ) as had_credit
    from counted
),

flips as (
    select *
    from flagged
    where has_credit <> had_credit
),

bounded as (
    select
        merchant_id,
        state_date as valid_from,
        has_credit,
        coalesce(
            {{ add_days(-1, 'lead(state_date) over (partition by merchant_id order by state_date)') }},
            {{ end_of_time() }}
        ) as valid_to
    from flips
)

select merchant_id, valid_from, valid_to
from bounded
where has_credit = 1
