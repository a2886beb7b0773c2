-- The credit lines a nightly build restates line by line, each from the
-- earliest date that something new can change it (int_credit_line_states):
--   - an event landed since the last build (var new_rows_since: the landing
--     time of the earliest delivery or orphan release the last build has not
--     seen), from its event date;
--   - a drawdown turning 30 or 90 days overdue on a date after the last
--     build's latest loaded ds (var loaded_through_before), from that date.
-- Every other line keeps its rows. program_reporting.build sets the vars only
-- when this is exact: no delivery seen before was replaced (its rows could be
-- gone) and no benchmark rate changes in the new dates (every line changes);
-- otherwise, and in a full refresh, this model is empty and the states
-- restate whole from restate_from.
{%- set since = var('new_rows_since', none) -%}
{%- set before = var('loaded_through_before', none) -%}

{% if since and before %}
with periods as (
    select max(loaded_through) as loaded_through
    from {{ ref('int_program_periods') }}
),

new_events as (
    select credit_line_id, event_date as from_date
    from {{ ref('int_credit_events') }}
    -- only re-read partitions can hold rows landed since the last build
    where _ds >= {{ reload_from() }}
      and _landed_at >= cast('{{ since }}' as timestamptz)
),

-- the same entries as int_credit_line_states counts (due_on <= latest ds - 30,
-- entry date <= latest ds), new when dated after the last build's latest ds
new_thresholds as (
    select
        drawdowns.credit_line_id,
        case
            when drawdowns.event_date > {{ add_days('thresholds.days_overdue', 'drawdowns.due_on') }}
                then drawdowns.event_date
            else {{ add_days('thresholds.days_overdue', 'drawdowns.due_on') }}
        end as from_date
    from {{ ref('int_credit_events') }} as drawdowns
    cross join (select 30 as days_overdue union all select 90 as days_overdue) as thresholds
    where drawdowns.event_type = 'drawdown'
      and drawdowns.due_on is not null
      and drawdowns.due_on <= {{ add_days(-30, '(select loaded_through from periods)') }}
      -- an entry after the last build's latest ds has due_on + 30 (90) after it
      -- (or its drawdown is new): a bound on the column, so old row groups are skipped
      and drawdowns.due_on > {{ add_days(-90, "cast('" ~ before ~ "' as date)") }}
)

select credit_line_id, min(from_date) as from_date
from (
    select credit_line_id, from_date from new_events
    union all
    select credit_line_id, from_date from new_thresholds
    where from_date > cast('{{ before }}' as date)
      and from_date <= (select loaded_through from periods)
) as candidates
group by credit_line_id
{% else %}
select cast(null as varchar) as credit_line_id, cast(null as date) as from_date
where false
{% endif %}
