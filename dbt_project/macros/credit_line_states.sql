{#- The SQL of int_credit_line_states (the model file documents it), as a
    macro so that a full build can run it in passes over disjoint sets of
    lines: pass `line_pass` of `passes` computes the lines whose id hashes to
    it. A line's rows depend on its own events and the benchmark rates only,
    so the passes together give the rows of one pass over every line. With
    one pass, incremental builds as the model is configured. -#}
{% macro credit_line_states(line_pass=0, passes=1) -%}
{%- set restate = restate_from() -%}
{%- set incremental = is_incremental() and passes == 1 -%}
{%- set by_line = incremental and restate_lines_by_line() -%}
with periods as (
    select program_code, loaded_through
    from {{ ref('int_program_periods') }}
),

{% if by_line %}
restates as (
    select credit_line_id, from_date
    from {{ ref('int_credit_line_restates') }}
),

-- Line by line, the stored events of the restated lines are picked before
-- they are dated (dated_credit_events): the program and local date of the
-- events a night restates, not of every event of the restatement window.
-- A local date on or after from_date has a UTC date on or after from_date - 1.
restated_events as (
    select stored.*
    from {{ ref('stg_credit_events') }} as stored
    inner join restates
        on stored.credit_line_id = restates.credit_line_id
    where stored._ds >= {{ restate }}
      and {{ utc_date('stored.event_at') }} >= {{ add_days(-1, 'restates.from_date') }}
),

-- their drawdowns with an overdue entry (below) that can fall between the line's
-- from_date and the latest loaded ds: due_on + 30 or + 90 in that span, or a new
-- event. Materialized: picked from the stored events before anything is dated.
{%- set through = latest_loaded_ds() %}
restated_drawdowns as materialized (
    select stored.*
    from {{ ref('stg_credit_events') }} as stored
    inner join restates
        on stored.credit_line_id = restates.credit_line_id
    where stored.event_type = 'drawdown'
      -- bounds on the column, so that DuckDB skips row groups: no entry before
      -- restate_from, none counted yet after the latest loaded ds (overdue_entries)
      and stored.due_on between {{ add_days(-90, restate) }} and {{ add_days(-30, through) }}
      and (stored.due_on between {{ add_days(-90, 'restates.from_date') }} and {{ add_days(-90, through) }}
           or stored.due_on between {{ add_days(-30, 'restates.from_date') }} and {{ add_days(-30, through) }}
           or {{ utc_date('stored.event_at') }} >= {{ add_days(-1, 'restates.from_date') }})
),
{% endif %}

events as (
    select events.*
    {% if by_line %}
    from ({{ dated_credit_events('restated_events') }}) as events
    inner join restates
        on events.credit_line_id = restates.credit_line_id
       and events.event_date >= restates.from_date
    {% else %}
    from {{ ref('int_credit_events') }} as events
    {% endif %}
    {% if passes > 1 %}
    where {{ line_pass_filter('events.credit_line_id', line_pass, passes) }}
    {% endif %}
    {% if incremental %}
    -- an event's date is never after its delivery's ds: _ds prunes old partitions
    {{ 'and' if passes > 1 else 'where' }} events._ds >= {{ restate }}
      and events.event_date >= {{ restate }}
    {% endif %}
),

-- a drawdown counts towards overdue_excess_30 (90) from max(event date, due_on + 30 (90));
-- incremental: also drawdowns from before restate_from whose thresholds fall after it
overdue_entries_all as (
    {{ overdue_entries('(' ~ dated_credit_events('restated_drawdowns') ~ ')' if by_line
                       else ref('int_credit_events') if incremental else 'events',
                       '(select max(loaded_through) from periods)') }}
      {% if incremental %}
      -- entries dated before restate_from are in the base rows already (a bound on the
      -- column itself, so that DuckDB skips row groups of old due dates)
      and drawdowns.due_on >= {{ add_days(-90, restate) }}
      {% endif %}
),

overdue_entries as (
    select overdue_entries_all.*
    from overdue_entries_all
    {% if by_line %}
    inner join restates
        on overdue_entries_all.credit_line_id = restates.credit_line_id
       and overdue_entries_all.entry_date >= restates.from_date
    {% endif %}
),

-- who a line belongs to (the merchant named on its earliest event) and where it starts
new_lines as (
    select
        credit_line_id,
        {{ first_by('merchant_id', '(event_at, event_id)') }} as merchant_id,
        {{ first_by('program_code', '(event_at, event_id)') }} as program_code,
        {{ first_by('currency', '(event_at, event_id)') }} as currency,
        min(event_date) as first_date
    from events
    group by credit_line_id
),

{% if incremental and not by_line %}
changed_lines as (
    select credit_line_id from events
    union
    select credit_line_id from overdue_entries where entry_date >= {{ restate }}
),
{% endif %}

{% if incremental %}
-- the last row before restate_from of every line that changes on or after it
-- (of every line, when a benchmark rate changes on or after it); line by line,
-- the last row before the line's from_date
base as (
    select
        credit_line_id,
        max(state_date) as state_date,
        {%- for column in ['merchant_id', 'program_code', 'currency', 'net_balance', 'overdue_excess_30',
                           'overdue_excess_90', 'has_opened', 'has_closed', 'credit_limit',
                           'annual_interest_rate', 'benchmark_rate'] %}
        {{ last_by(column, 'state_date') }} as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    {% if by_line %}
    from (
        select kept.*
        from {{ this }} as kept
        inner join restates
            on kept.credit_line_id = restates.credit_line_id
           and kept.state_date < restates.from_date
    ) as kept
    {% else %}
    from {{ this }}
    where state_date < {{ restate }}
      and (
          credit_line_id in (select credit_line_id from changed_lines)
          or exists (
              select 1 from {{ ref('int_benchmark_rate_periods') }} as changes
              where changes.valid_from >= {{ restate }}
                and changes.valid_from <= (select max(loaded_through) from periods)
          )
      )
    {% endif %}
    group by credit_line_id
),
{% endif %}

lines as (
    {% if incremental %}
    select credit_line_id, merchant_id, program_code, currency, state_date as first_date, true as has_base
    from base
    union all
    select credit_line_id, merchant_id, program_code, currency, first_date, false as has_base
    from new_lines
    where credit_line_id not in (select credit_line_id from base)
    {% else %}
    select credit_line_id, merchant_id, program_code, currency, first_date, false as has_base
    from new_lines
    {% endif %}
),

-- the day's last limit (line_opened / limit_changed) and opening rate, by (event_at, event_id):
-- few events, aggregated apart so that the big aggregation below stays simple
limit_days as (
    select
        credit_line_id,
        event_date as state_date,
        {{ last_by('amount', '(event_at, event_id)') }} as day_limit
    from events
    where event_type in ('line_opened', 'limit_changed')
    group by credit_line_id, event_date
),

rate_days as (
    select
        credit_line_id,
        event_date as state_date,
        {{ last_by('annual_interest_rate', '(event_at, event_id)') }} as day_rate
    from events
    where event_type = 'line_opened'
    group by credit_line_id, event_date
),

-- every change, one row per line, date and kind
changes as (
    select
        credit_line_id,
        event_date as state_date,
        cast(case when event_type = 'drawdown' then amount else 0 end as decimal(18, 2)) as d_drawn,
        cast(case when event_type = 'repayment' then amount else 0 end as decimal(18, 2)) as d_repaid,
        cast(case when event_type = 'written_off' then amount else 0 end as decimal(18, 2)) as d_written_off,
        cast(case when event_type in ('repayment', 'written_off') then -amount else 0 end as decimal(18, 2)) as d_excess30,
        cast(case when event_type in ('repayment', 'written_off') then -amount else 0 end as decimal(18, 2)) as d_excess90,
        case event_type when 'line_opened' then 1 when 'line_closed' then 2 else 0 end as d_flags,
        cast(null as decimal(14, 2)) as day_limit,
        cast(null as decimal(12, 6)) as day_rate,
        cast(null as decimal(12, 6)) as benchmark
    from events

    union all

    select credit_line_id, state_date, 0, 0, 0, 0, 0, 0, day_limit, null, null
    from limit_days

    union all

    select credit_line_id, state_date, 0, 0, 0, 0, 0, 0, null, day_rate, null
    from rate_days

    union all

    select
        credit_line_id, entry_date, 0, 0, 0,
        case when days_overdue = 30 then amount else 0 end,
        case when days_overdue = 90 then amount else 0 end,
        0, null, null, null
    from overdue_entries
    where entry_date <= (select max(loaded_through) from periods)
    {% if incremental %}
      and entry_date >= {{ restate }}
    {% endif %}

    union all

    -- benchmark-rate changes after a line's start (up to the latest loaded ds), and the
    -- rate in force on a new line's first date
    select
        lines.credit_line_id,
        rates.valid_from, 0, 0, 0, 0, 0, 0, null, null,
        rates.annual_rate
    from lines
    inner join {{ ref('int_benchmark_rate_periods') }} as rates
        on lines.currency = rates.currency
       and rates.valid_from > lines.first_date
       and rates.valid_from <= (select max(loaded_through) from periods)
    {% if by_line %}
    inner join restates
        on lines.credit_line_id = restates.credit_line_id
       and rates.valid_from >= restates.from_date
    {% elif incremental %}
       and rates.valid_from >= {{ restate }}
    {% endif %}

    union all

    select
        lines.credit_line_id,
        lines.first_date, 0, 0, 0, 0, 0, 0, null, null,
        rates.annual_rate
    from lines
    inner join {{ ref('int_benchmark_rate_periods') }} as rates
        on lines.currency = rates.currency
       and lines.first_date between rates.valid_from and rates.valid_to
    where not lines.has_base
),

days as (
    select
        credit_line_id,
        state_date,
        false as is_base,
        cast(sum(d_drawn) as decimal(18, 2)) as d_drawn,
        cast(sum(d_repaid) as decimal(18, 2)) as d_repaid,
        cast(sum(d_written_off) as decimal(18, 2)) as d_written_off,
        cast(sum(d_drawn) - sum(d_repaid) - sum(d_written_off) as decimal(18, 2)) as d_net,
        cast(sum(d_excess30) as decimal(18, 2)) as d_excess30,
        cast(sum(d_excess90) as decimal(18, 2)) as d_excess90,
        bit_or(d_flags) as d_flags,
        max(day_limit) as day_limit,
        max(day_rate) as day_rate,
        max(benchmark) as day_benchmark
    from changes
    group by credit_line_id, state_date
),

stream as (
    select * from days
    {% if incremental %}
    union all
    -- the base row carries the line's levels
    select
        credit_line_id,
        state_date,
        true as is_base,
        0, 0, 0,
        net_balance,
        overdue_excess_30,
        overdue_excess_90,
        (case when has_opened then 1 else 0 end) + (case when has_closed then 2 else 0 end),
        credit_limit,
        annual_interest_rate,
        benchmark_rate
    from base
    {% endif %}
),

running as (
    select
        stream.*,
        sum(d_net) over to_date as net_balance,
        sum(d_excess30) over to_date as overdue_excess_30,
        sum(d_excess90) over to_date as overdue_excess_90,
        bit_or(d_flags) over to_date as flags,
        coalesce(bit_or(d_flags) over before_today, 0) as flags_before,
        {{ carry_forward('day_limit', 'to_date') }} as credit_limit,
        {{ carry_forward('day_limit', 'before_today') }} as credit_limit_before,
        {{ carry_forward('day_rate', 'to_date') }} as annual_interest_rate,
        {{ carry_forward('day_rate', 'before_today') }} as annual_interest_rate_before,
        {{ carry_forward('day_benchmark', 'to_date') }} as benchmark_rate,
        {{ carry_forward('day_benchmark', 'before_today') }} as benchmark_rate_before
    from stream
    window
        to_date as (partition by credit_line_id order by state_date rows between unbounded preceding and current row),
        before_today as (partition by credit_line_id order by state_date rows between unbounded preceding and 1 preceding)
),

levels as (
    select
        running.*,
        flags = 1 as is_open,
        flags_before = 1 as was_open,
        case when net_balance > 0 then net_balance else 0 end as outstanding_balance,
        case when net_balance - d_net > 0 then net_balance - d_net else 0 end as outstanding_before,
        overdue_excess_30 - d_excess30 as overdue_excess_30_before,
        overdue_excess_90 - d_excess90 as overdue_excess_90_before
    from running
),

measures as (
    select
        levels.*,
        case when is_open then coalesce(credit_limit, 0) else 0 end as open_credit_limit,
        case when was_open then coalesce(credit_limit_before, 0) else 0 end as open_credit_limit_before,
        case when overdue_excess_30 > 0 then outstanding_balance else 0 end as par30_balance,
        case when overdue_excess_30_before > 0 then outstanding_before else 0 end as par30_before,
        case when overdue_excess_90 > 0 then outstanding_balance else 0 end as par90_balance,
        case when overdue_excess_90_before > 0 then outstanding_before else 0 end as par90_before,
        cast(outstanding_balance * case
            when benchmark_rate > annual_interest_rate then benchmark_rate - annual_interest_rate else 0
        end as decimal(38, 8)) as subsidy_slope_x365,
        cast(outstanding_before * case
            when benchmark_rate_before > annual_interest_rate_before
                then benchmark_rate_before - annual_interest_rate_before else 0
        end as decimal(38, 8)) as subsidy_slope_before
    from levels
)

select
    measures.credit_line_id,
    lines.merchant_id,
    lines.program_code,
    lines.currency,
    measures.state_date,
    (flags & 1) = 1 as has_opened,
    (flags & 2) = 2 as has_closed,
    is_open,
    cast(credit_limit as decimal(14, 2)) as credit_limit,
    cast(annual_interest_rate as decimal(12, 6)) as annual_interest_rate,
    cast(benchmark_rate as decimal(12, 6)) as benchmark_rate,
    cast(net_balance as decimal(38, 2)) as net_balance,
    cast(outstanding_balance as decimal(38, 2)) as outstanding_balance,
    cast(overdue_excess_30 as decimal(38, 2)) as overdue_excess_30,
    cast(overdue_excess_90 as decimal(38, 2)) as overdue_excess_90,
    cast(par30_balance as decimal(38, 2)) as par30_balance,
    cast(par90_balance as decimal(38, 2)) as par90_balance,
    cast(d_drawn as decimal(38, 2)) as goods_purchased_on_day,
    subsidy_slope_x365,
    cast((case when is_open then 1 else 0 end) - (case when was_open then 1 else 0 end) as bigint) as delta_open_lines,
    cast(open_credit_limit - open_credit_limit_before as decimal(38, 2)) as delta_credit_limit,
    cast(d_drawn as decimal(38, 2)) as delta_drawn,
    cast(d_repaid as decimal(38, 2)) as delta_repaid,
    cast(d_written_off as decimal(38, 2)) as delta_written_off,
    cast(outstanding_balance - outstanding_before as decimal(38, 2)) as delta_outstanding,
    cast(par30_balance - par30_before as decimal(38, 2)) as delta_par30,
    cast(par90_balance - par90_before as decimal(38, 2)) as delta_par90,
    cast(-(subsidy_slope_x365 - subsidy_slope_before) * ({{ day_number('measures.state_date') }} - 1)
        as decimal(38, 8)) as delta_subsidy_level_x365,
    cast(subsidy_slope_x365 - subsidy_slope_before as decimal(38, 8)) as delta_subsidy_slope_x365
from measures
inner join lines
    on measures.credit_line_id = lines.credit_line_id
where not measures.is_base
{%- endmacro %}

{#- How many passes a full build (--full-refresh) of int_credit_line_states
    makes: build_plan line_passes, which int_build_plan computes from the
    stored credit events and the DuckDB memory limit; 1 for any other build.
    The model's body (the first pass) and its post-hook (the others) both ask here, so
    they always agree. One pass over 190M events spilled more than 60 GB; a
    pass's spill grows faster than its events, so passes bound the disk that
    a full build needs. -#}
{% macro line_passes() -%}
  {#- a unit test runs the model's body alone, on its fixtures: one pass -#}
  {%- if model.resource_type == 'unit_test' -%}{{ return(1) }}{%- endif -%}
  {%- set value = build_plan('line_passes') -%}
  {{ return(value | int if value and should_full_refresh() else 1) }}
{%- endmacro %}

{#- Whether a line id falls in pass `line_pass` of `passes` (a hash of the id:
    every line in exactly one pass, on either engine). -#}
{% macro line_pass_filter(column, line_pass, passes) -%}
  (({{ text_hash(column) }} % {{ passes }}) + {{ passes }}) % {{ passes }} = {{ line_pass }}
{%- endmacro %}

{#- Post-hook of int_credit_line_states: passes 1 to n - 1 of a full build in
    passes, appended to the table that pass 0 created. -#}
{% macro credit_line_states_other_passes() -%}
  {%- set passes = line_passes() -%}
  {%- if passes > 1 %}{{ log("int_credit_line_states: a full build in " ~ passes ~ " passes over the lines",
                              info=True) }}{% endif %}
  {%- for k in range(1, passes) %}
    insert into {{ this }}
    {{ credit_line_states(k, passes) }};
  {%- endfor %}
{%- endmacro %}
