{{
  config(
    materialized = 'incremental',
    incremental_strategy = 'append',
    on_schema_change = 'fail',
    pre_hook = [
      "{% if is_incremental() %}delete from {{ this }} where state_date >= {{ restate_from() }}{% endif %}"
    ]
  )
}}
{#-
  The state of every credit line at the end of each date on which it changes
  (kpis.md "The state of things at the end of day d"); the line keeps that
  state until its next row. A line changes only on:
    - the event date of one of its events;
    - the date a drawdown's amount starts to count as 30 (90) days overdue:
      max(event date, due_on + 30 (90));
    - a benchmark-rate change (the subsidy's daily cost changes);
  up to the latest loaded ds of the program. Rows scale with events, not with
  lines x days.

  Days past due without per-day allocation: repayments and write-offs are
  allocated to drawdowns in order of (due_on, event_at, event_id), so the
  drawdowns with due_on <= x are a prefix of that order and one of them keeps
  an unallocated remainder exactly when their total exceeds everything paid.
  Hence days past due at d >= k (k >= 1) exactly when
      (sum of drawdowns to date with due_on <= d - k) - (repayments + write-offs to date) > 0,
  i.e. overdue_excess_k(d) > 0, where each drawdown's amount enters
  overdue_excess_k on max(its event date, due_on + k). See
  int_credit_line_days_past_due for the allocation itself.

  Subsidy (kpis.md interest_subsidy_cost_to_date), kept x 365 so that it stays
  exact: the daily cost x 365 is outstanding x max(0, benchmark - line rate),
  constant between rows. subsidy_to_date_x365(d) = subsidy_level_x365 +
  subsidy_slope_x365 x day_number(d) for d from state_date to the next row.

  delta_* columns: the change of each additive measure from the line's
  previous row; kpi figures are running sums of these deltas.

  Incremental: every row dated on or after restate_from is deleted (pre_hook)
  and recomputed from the line's last row before it (the base) plus the
  events, overdue thresholds and rate changes dated on or after it.
-#}
{%- set restate = restate_from() -%}

with periods as (
    select program_code, loaded_through
    from {{ ref('int_program_periods') }}
),

events as (
    select events.*
    from {{ ref('int_credit_events') }} as events
    {% if is_incremental() %}
    where events.event_date >= {{ restate }}
    {% endif %}
),

-- overdue thresholds: a drawdown counts towards overdue_excess_30 (90) from
-- max(event date, due_on + 30 (90))
overdue_entries as (
    select
        drawdowns.credit_line_id,
        drawdowns.merchant_id,
        drawdowns.program_code,
        drawdowns.currency,
        drawdowns.event_at,
        drawdowns.event_id,
        thresholds.days_overdue,
        cast(case
            when drawdowns.event_date > {{ add_days('thresholds.days_overdue', 'drawdowns.due_on') }}
                then drawdowns.event_date
            else {{ add_days('thresholds.days_overdue', 'drawdowns.due_on') }}
        end as date) as entry_date,
        drawdowns.amount
    from {{ ref('int_credit_events') }} as drawdowns
    cross join (select 30 as days_overdue union all select 90 as days_overdue) as thresholds
    where drawdowns.event_type = 'drawdown'
    {% if is_incremental() %}
      -- entries dated before restate_from are already in the base rows
      and {{ add_days(90, 'drawdowns.due_on') }} >= {{ restate }}
    {% endif %}
),

-- the day's last limit (line_opened / limit_changed) and last opening rate,
-- latest by (event_at, event_id)
limit_events as (
    select
        credit_line_id,
        event_date,
        amount as day_limit,
        row_number() over (
            partition by credit_line_id, event_date order by event_at desc, event_id desc
        ) as day_rank
    from events
    where event_type in ('line_opened', 'limit_changed')
),

rate_events as (
    select
        credit_line_id,
        event_date,
        annual_interest_rate as day_rate,
        row_number() over (
            partition by credit_line_id, event_date order by event_at desc, event_id desc
        ) as day_rank
    from events
    where event_type = 'line_opened'
),

event_days as (
    select
        credit_line_id,
        event_date as state_date,
        sum(case when event_type = 'drawdown' then amount else 0 end) as d_drawn,
        sum(case when event_type = 'repayment' then amount else 0 end) as d_repaid,
        sum(case when event_type = 'written_off' then amount else 0 end) as d_written_off,
        max(case when event_type = 'line_opened' then 1 else 0 end) as d_opened,
        max(case when event_type = 'line_closed' then 1 else 0 end) as d_closed
    from events
    group by credit_line_id, event_date
),

overdue_days as (
    select
        credit_line_id,
        entry_date as state_date,
        sum(case when days_overdue = 30 then amount else 0 end) as d_due30,
        sum(case when days_overdue = 90 then amount else 0 end) as d_due90
    from overdue_entries
    where 1 = 1
    {% if is_incremental() %}
      and entry_date >= {{ restate }}
    {% endif %}
    group by credit_line_id, entry_date
),

{% if is_incremental() %}
-- the last row before restate_from of every line that changes on or after it
changed_lines as (
    select credit_line_id from event_days
    union
    select credit_line_id from overdue_days
),

base as (
    select *
    from (
        select
            states.*,
            row_number() over (partition by states.credit_line_id order by states.state_date desc) as recency
        from {{ this }} as states
        where states.state_date < {{ restate }}
          and (
              states.credit_line_id in (select credit_line_id from changed_lines)
              -- a benchmark change in the window touches every line
              or exists (
                  select 1 from {{ ref('int_benchmark_rate_periods') }} as changes
                  where changes.valid_from >= {{ restate }}
                    and changes.currency = states.currency
                    and changes.valid_from <= (select max(loaded_through) from periods)
              )
          )
    ) as ranked
    where recency = 1
),
{% endif %}

-- one row per line: who it belongs to (the merchant named on its earliest
-- event) and where it starts
new_lines as (
    select credit_line_id, merchant_id, program_code, currency, first_date
    from (
        select
            credit_line_id,
            merchant_id,
            program_code,
            currency,
            min(event_date) over (partition by credit_line_id) as first_date,
            row_number() over (partition by credit_line_id order by event_at, event_id) as seq
        from (
            select credit_line_id, merchant_id, program_code, currency, event_date, event_at, event_id from events
            union all
            select credit_line_id, merchant_id, program_code, currency, entry_date, event_at, event_id from overdue_entries
        ) as touching
    ) as ranked
    where seq = 1
),

lines as (
    {% if is_incremental() %}
    select credit_line_id, merchant_id, program_code, currency, state_date as first_date, true as has_base
    from base
    union all
    select new_lines.credit_line_id, new_lines.merchant_id, new_lines.program_code, new_lines.currency,
           new_lines.first_date, false as has_base
    from new_lines
    where new_lines.credit_line_id not in (select credit_line_id from base)
    {% else %}
    select credit_line_id, merchant_id, program_code, currency, first_date, false as has_base
    from new_lines
    {% endif %}
),

benchmark_changes as (
    select
        lines.credit_line_id,
        changes.valid_from as state_date,
        changes.annual_rate as day_benchmark
    from lines
    inner join periods
        on lines.program_code = periods.program_code
    inner join {{ ref('int_benchmark_rate_periods') }} as changes
        on lines.currency = changes.currency
       and changes.valid_from > lines.first_date
       and changes.valid_from <= periods.loaded_through
    {% if is_incremental() %}
       and changes.valid_from >= {{ restate }}
    {% endif %}
),

-- the benchmark in force on a new line's first date
first_benchmarks as (
    select
        lines.credit_line_id,
        lines.first_date as state_date,
        rates.annual_rate as day_benchmark
    from lines
    inner join {{ ref('int_benchmark_rate_periods') }} as rates
        on lines.currency = rates.currency
       and lines.first_date between rates.valid_from and rates.valid_to
    where not lines.has_base
),

change_dates as (
    select credit_line_id, state_date from event_days
    union
    select credit_line_id, state_date from overdue_days
    union
    select credit_line_id, state_date from benchmark_changes
),

day_rows as (
    select
        change_dates.credit_line_id,
        change_dates.state_date,
        false as is_base,
        coalesce(event_days.d_drawn, 0) as d_drawn,
        coalesce(event_days.d_repaid, 0) as d_repaid,
        coalesce(event_days.d_written_off, 0) as d_written_off,
        coalesce(event_days.d_drawn, 0) as goods_purchased_on_day,
        coalesce(overdue_days.d_due30, 0)
            - coalesce(event_days.d_repaid, 0) - coalesce(event_days.d_written_off, 0) as d_excess30,
        coalesce(overdue_days.d_due90, 0)
            - coalesce(event_days.d_repaid, 0) - coalesce(event_days.d_written_off, 0) as d_excess90,
        coalesce(event_days.d_opened, 0) as d_opened,
        coalesce(event_days.d_closed, 0) as d_closed,
        limit_events.day_limit,
        rate_events.day_rate,
        coalesce(benchmark_changes.day_benchmark, first_benchmarks.day_benchmark) as day_benchmark,
        case when benchmark_changes.credit_line_id is not null or first_benchmarks.credit_line_id is not null
            then 1 else 0 end as sets_benchmark,
        cast(null as decimal(38, 8)) as base_subsidy_before_x365
    from change_dates
    left join event_days
        on change_dates.credit_line_id = event_days.credit_line_id
       and change_dates.state_date = event_days.state_date
    left join overdue_days
        on change_dates.credit_line_id = overdue_days.credit_line_id
       and change_dates.state_date = overdue_days.state_date
    left join limit_events
        on change_dates.credit_line_id = limit_events.credit_line_id
       and change_dates.state_date = limit_events.event_date
       and limit_events.day_rank = 1
    left join rate_events
        on change_dates.credit_line_id = rate_events.credit_line_id
       and change_dates.state_date = rate_events.event_date
       and rate_events.day_rank = 1
    left join benchmark_changes
        on change_dates.credit_line_id = benchmark_changes.credit_line_id
       and change_dates.state_date = benchmark_changes.state_date
    left join first_benchmarks
        on change_dates.credit_line_id = first_benchmarks.credit_line_id
       and change_dates.state_date = first_benchmarks.state_date
),

stream as (
    select * from day_rows
    {% if is_incremental() %}
    union all
    -- the base row carries the line's levels as its "deltas"
    select
        credit_line_id,
        state_date,
        true as is_base,
        drawn_to_date as d_drawn,
        repaid_to_date as d_repaid,
        written_off_to_date as d_written_off,
        0 as goods_purchased_on_day,
        overdue_excess_30 as d_excess30,
        overdue_excess_90 as d_excess90,
        case when has_opened then 1 else 0 end as d_opened,
        case when has_closed then 1 else 0 end as d_closed,
        credit_limit as day_limit,
        annual_interest_rate as day_rate,
        benchmark_rate as day_benchmark,
        1 as sets_benchmark,
        subsidy_before_x365 as base_subsidy_before_x365
    from base
    {% endif %}
),

running as (
    select
        stream.*,
        sum(d_drawn) over line_to_date as drawn_to_date,
        sum(d_repaid) over line_to_date as repaid_to_date,
        sum(d_written_off) over line_to_date as written_off_to_date,
        sum(d_excess30) over line_to_date as overdue_excess_30,
        sum(d_excess90) over line_to_date as overdue_excess_90,
        max(d_opened) over line_to_date as opened_to_date,
        max(d_closed) over line_to_date as closed_to_date,
        count(day_limit) over line_to_date as limit_group,
        count(day_rate) over line_to_date as rate_group,
        sum(sets_benchmark) over line_to_date as benchmark_group,
        {{ day_number('state_date') }} as state_day_number,
        lead({{ day_number('state_date') }}) over (partition by credit_line_id order by state_date) as next_day_number
    from stream
    window line_to_date as (partition by credit_line_id order by state_date rows between unbounded preceding and current row)
),

carried as (
    select
        running.*,
        max(day_limit) over (partition by credit_line_id, limit_group) as credit_limit,
        max(day_rate) over (partition by credit_line_id, rate_group) as annual_interest_rate,
        max(day_benchmark) over (partition by credit_line_id, benchmark_group) as benchmark_rate
    from running
),

levels as (
    select
        carried.*,
        opened_to_date = 1 and closed_to_date = 0 as is_open,
        case when drawn_to_date - repaid_to_date - written_off_to_date > 0
            then drawn_to_date - repaid_to_date - written_off_to_date else 0 end as outstanding_balance
    from carried
),

measures as (
    select
        levels.*,
        case when is_open then 1 else 0 end as open_lines,
        case when is_open then coalesce(credit_limit, 0) else 0 end as open_credit_limit,
        case when overdue_excess_30 > 0 then outstanding_balance else 0 end as par30_balance,
        case when overdue_excess_90 > 0 then outstanding_balance else 0 end as par90_balance,
        cast(outstanding_balance * case
            when benchmark_rate is null or annual_interest_rate is null then 0
            when benchmark_rate > annual_interest_rate then benchmark_rate - annual_interest_rate
            else 0
        end as decimal(38, 8)) as subsidy_slope_x365
    from levels
),

accumulated as (
    select
        measures.*,
        -- subsidy x 365 accrued on the days before state_date
        cast(
            coalesce(max(base_subsidy_before_x365) over (partition by credit_line_id), 0)
            + coalesce(sum(subsidy_slope_x365 * (next_day_number - state_day_number)) over (
                partition by credit_line_id order by state_date
                rows between unbounded preceding and 1 preceding
            ), 0)
        as decimal(38, 8)) as subsidy_before_x365
    from measures
),

final as (
    select
        accumulated.*,
        cast(subsidy_before_x365 - subsidy_slope_x365 * (state_day_number - 1) as decimal(38, 8)) as subsidy_level_x365
    from accumulated
),

with_deltas as (
    select
        final.*,
        lag(open_lines) over line_order as prev_open_lines,
        lag(open_credit_limit) over line_order as prev_open_credit_limit,
        lag(drawn_to_date) over line_order as prev_drawn_to_date,
        lag(repaid_to_date) over line_order as prev_repaid_to_date,
        lag(written_off_to_date) over line_order as prev_written_off_to_date,
        lag(outstanding_balance) over line_order as prev_outstanding_balance,
        lag(par30_balance) over line_order as prev_par30_balance,
        lag(par90_balance) over line_order as prev_par90_balance,
        lag(subsidy_level_x365) over line_order as prev_subsidy_level_x365,
        lag(subsidy_slope_x365) over line_order as prev_subsidy_slope_x365
    from final
    window line_order as (partition by credit_line_id order by state_date)
)

select
    with_deltas.credit_line_id,
    lines.merchant_id,
    lines.program_code,
    lines.currency,
    with_deltas.state_date,
    with_deltas.opened_to_date = 1 as has_opened,
    with_deltas.closed_to_date = 1 as has_closed,
    with_deltas.is_open,
    cast(with_deltas.credit_limit as decimal(14, 2)) as credit_limit,
    cast(with_deltas.annual_interest_rate as decimal(12, 6)) as annual_interest_rate,
    cast(with_deltas.benchmark_rate as decimal(12, 6)) as benchmark_rate,
    cast(with_deltas.drawn_to_date as decimal(38, 2)) as drawn_to_date,
    cast(with_deltas.repaid_to_date as decimal(38, 2)) as repaid_to_date,
    cast(with_deltas.written_off_to_date as decimal(38, 2)) as written_off_to_date,
    cast(with_deltas.outstanding_balance as decimal(38, 2)) as outstanding_balance,
    cast(with_deltas.overdue_excess_30 as decimal(38, 2)) as overdue_excess_30,
    cast(with_deltas.overdue_excess_90 as decimal(38, 2)) as overdue_excess_90,
    cast(with_deltas.par30_balance as decimal(38, 2)) as par30_balance,
    cast(with_deltas.par90_balance as decimal(38, 2)) as par90_balance,
    cast(with_deltas.goods_purchased_on_day as decimal(38, 2)) as goods_purchased_on_day,
    with_deltas.subsidy_before_x365,
    with_deltas.subsidy_slope_x365,
    with_deltas.subsidy_level_x365,
    cast(with_deltas.open_lines - coalesce(with_deltas.prev_open_lines, 0) as bigint) as delta_open_lines,
    cast(with_deltas.open_credit_limit - coalesce(with_deltas.prev_open_credit_limit, 0) as decimal(38, 2)) as delta_credit_limit,
    cast(with_deltas.drawn_to_date - coalesce(with_deltas.prev_drawn_to_date, 0) as decimal(38, 2)) as delta_drawn,
    cast(with_deltas.repaid_to_date - coalesce(with_deltas.prev_repaid_to_date, 0) as decimal(38, 2)) as delta_repaid,
    cast(with_deltas.written_off_to_date - coalesce(with_deltas.prev_written_off_to_date, 0) as decimal(38, 2)) as delta_written_off,
    cast(with_deltas.outstanding_balance - coalesce(with_deltas.prev_outstanding_balance, 0) as decimal(38, 2)) as delta_outstanding,
    cast(with_deltas.par30_balance - coalesce(with_deltas.prev_par30_balance, 0) as decimal(38, 2)) as delta_par30,
    cast(with_deltas.par90_balance - coalesce(with_deltas.prev_par90_balance, 0) as decimal(38, 2)) as delta_par90,
    cast(with_deltas.subsidy_level_x365 - coalesce(with_deltas.prev_subsidy_level_x365, 0) as decimal(38, 8)) as delta_subsidy_level_x365,
    cast(with_deltas.subsidy_slope_x365 - coalesce(with_deltas.prev_subsidy_slope_x365, 0) as decimal(38, 8)) as delta_subsidy_slope_x365
from with_deltas
inner join lines
    on with_deltas.credit_line_id = lines.credit_line_id
inner join periods
    on lines.program_code = periods.program_code
where not with_deltas.is_base
  and with_deltas.state_date <= periods.loaded_through
