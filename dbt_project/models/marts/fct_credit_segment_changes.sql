{{
  config(
    materialized = 'incremental',
    on_schema_change = 'fail',
    **restating_config('change_date', [
      "{% if is_incremental() %}delete from {{ this }} where change_date >= {{ restate_from() }}{% endif %}"
    ], 'restate_from()')
  )
}}
-- How the credit figures of each segment change on each date: the sum of the
-- line deltas of int_credit_line_states, each counted in the segment of its
-- merchant on that date, plus, when a merchant moves segment on date M, the
-- transfer of its lines' whole state at M - 1 from the old segment to the new
-- one ("when a merchant moves region, its whole history moves with it").
-- A segment's figure on date d is the running sum of its changes up to d
-- (fct_segment_daily). goods_purchased_on_day is not a change: it is the
-- day's figure itself.
-- Incremental: rows dated on or after restate_from are deleted and recomputed.
{%- set restate = restate_from() %}

with segments as (
    select * from {{ ref('int_merchant_segment_periods') }}
),

line_changes as (
    select
        segments.program_code,
        segments.region,
        segments.business_type,
        segments.size_class,
        states.state_date as change_date,
        states.delta_open_lines,
        states.delta_credit_limit,
        states.delta_drawn,
        states.delta_repaid,
        states.delta_written_off,
        states.delta_outstanding,
        states.delta_par30,
        states.delta_par90,
        states.delta_subsidy_level_x365,
        states.delta_subsidy_slope_x365,
        states.goods_purchased_on_day
    from {{ ref('int_credit_line_states') }} as states
    inner join segments
        on states.merchant_id = segments.merchant_id
            and states.state_date between segments.valid_from and segments.valid_to
    {% if is_incremental() %}
    where states.state_date >= {{ restate }}
    {% endif %}
),

moves as (
    select
        moved.merchant_id,
        moved.valid_from as move_date,
        previous.program_code as from_program_code,
        previous.region as from_region,
        previous.business_type as from_business_type,
        previous.size_class as from_size_class,
        moved.program_code,
        moved.region,
        moved.business_type,
        moved.size_class
    from segments as moved
    inner join segments as previous
        on moved.merchant_id = previous.merchant_id
            and moved.period_seq = previous.period_seq + 1
    {% if is_incremental() %}
    where moved.valid_from >= {{ restate }}
    {% endif %}
),

-- each line's figures on the day before the move: the sums of its changes so far
states_before_move as (
    select
        moves.merchant_id,
        moves.move_date,
        moves.from_program_code, moves.from_region, moves.from_business_type, moves.from_size_class,
        moves.program_code, moves.region, moves.business_type, moves.size_class,
        sum(states.delta_open_lines) as open_lines,
        sum(states.delta_credit_limit) as credit_limit,
        sum(states.delta_drawn) as drawn,
        sum(states.delta_repaid) as repaid,
        sum(states.delta_written_off) as written_off,
        sum(states.delta_outstanding) as outstanding,
        sum(states.delta_par30) as par30,
        sum(states.delta_par90) as par90,
        sum(states.delta_subsidy_level_x365) as subsidy_level_x365,
        sum(states.delta_subsidy_slope_x365) as subsidy_slope_x365
    from moves
    inner join {{ ref('int_credit_line_states') }} as states
        on moves.merchant_id = states.merchant_id
            and moves.move_date > states.state_date
    group by
        moves.merchant_id, moves.move_date,
        moves.from_program_code, moves.from_region, moves.from_business_type, moves.from_size_class,
        moves.program_code, moves.region, moves.business_type, moves.size_class
),

transfers as (
    select
        case
            when direction.sign = 1 then before_move.program_code else before_move.from_program_code
        end as program_code,
        case
            when direction.sign = 1 then before_move.region else before_move.from_region
        end as region,
        case
            when direction.sign = 1 then before_move.business_type else before_move.from_business_type
        end as business_type,
        case
            when direction.sign = 1 then before_move.size_class else before_move.from_size_class
        end as size_class,
        before_move.move_date as change_date,
        direction.sign * before_move.open_lines as delta_open_lines,
        direction.sign * before_move.credit_limit as delta_credit_limit,
        direction.sign * before_move.drawn as delta_drawn,
        direction.sign * before_move.repaid as delta_repaid,
        direction.sign * before_move.written_off as delta_written_off,
        direction.sign * before_move.outstanding as delta_outstanding,
        direction.sign * before_move.par30 as delta_par30,
        direction.sign * before_move.par90 as delta_par90,
        direction.sign * before_move.subsidy_level_x365 as delta_subsidy_level_x365,
        direction.sign * before_move.subsidy_slope_x365 as delta_subsidy_slope_x365,
        0 as goods_purchased_on_day
    from states_before_move as before_move
    cross join (
        select 1 as sign
        union all
        select -1 as sign
    ) as direction
),

all_changes as (
    select * from line_changes
    union all
    select
        program_code, region, business_type, size_class, change_date,
        delta_open_lines, delta_credit_limit, delta_drawn, delta_repaid, delta_written_off,
        delta_outstanding, delta_par30, delta_par90, delta_subsidy_level_x365,
        delta_subsidy_slope_x365, goods_purchased_on_day
    from transfers
)

select
    program_code,
    region,
    business_type,
    size_class,
    change_date,
    cast(sum(delta_open_lines) as bigint) as delta_open_credit_lines,
    cast(sum(delta_credit_limit) as decimal(38, 2)) as delta_credit_limit_total,
    cast(sum(delta_drawn) as decimal(38, 2)) as delta_drawn_to_date,
    cast(sum(delta_repaid) as decimal(38, 2)) as delta_repaid_to_date,
    cast(sum(delta_written_off) as decimal(38, 2)) as delta_written_off_to_date,
    cast(sum(delta_outstanding) as decimal(38, 2)) as delta_outstanding_balance,
    cast(sum(delta_par30) as decimal(38, 2)) as delta_par30_balance,
    cast(sum(delta_par90) as decimal(38, 2)) as delta_par90_balance,
    cast(sum(delta_subsidy_level_x365) as decimal(38, 8)) as delta_subsidy_level_x365,
    cast(sum(delta_subsidy_slope_x365) as decimal(38, 8)) as delta_subsidy_slope_x365,
    cast(sum(goods_purchased_on_day) as decimal(38, 2)) as goods_purchased_on_day
from all_changes
group by program_code, region, business_type, size_class, change_date
