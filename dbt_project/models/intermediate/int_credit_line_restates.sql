-- The credit lines a nightly build restates line by line, each from the
-- earliest date that something new can change it (int_credit_line_states):
--   - an event landed since the last build (plan new_rows_since: the landing
--     time of the earliest delivery or orphan release the last build has not
--     seen), from its event date;
--   - a drawdown turning 30 or 90 days overdue on a date after the last
--     build's latest loaded ds (plan loaded_through_before), from that date.
-- Every other line keeps its rows. int_build_plan sets those values only
-- when this is exact: no delivery seen before was replaced (its rows could be
-- gone) and no benchmark rate changes in the new dates (every line changes);
-- otherwise, and in a full refresh, this model is empty and the states
-- restate whole from restate_from.
{%- set since = build_plan('new_rows_since') -%}
{%- set before = build_plan('loaded_through_before') -%}
{%- set before_date = "cast('" ~ before ~ "' as date)" -%}
-- the plan is read when the model runs, not when dbt parses it: both branches' refs
-- depends_on: {{ ref('int_program_periods') }}
-- depends_on: {{ ref('int_credit_events') }}
-- depends_on: {{ ref('stg_credit_events') }}
-- depends_on: {{ ref('int_merchant_versions') }}
-- depends_on: {{ ref('programs') }}

{% if restate_lines_by_line() %}
with periods as (
    select max(loaded_through) as loaded_through
    from {{ ref('int_program_periods') }}
),

-- Stored events are picked before they are dated (dated_credit_events): the
-- program and local date of the few events that can matter, not of every
-- event of the re-read partitions.
new_stored as (
    select *
    from {{ ref('stg_credit_events') }}
    -- only the rows staging re-read or appended can have landed since the last build
    where {{ reread_rows('credit_events') }}
        and _landed_at >= cast('{{ since }}' as {{ instant_type() }})
),

new_events as (
    select credit_line_id, event_date as from_date
    from ({{ dated_credit_events('new_stored') }}) as events
),

-- drawdowns with an overdue threshold (due_on + 30 or + 90) after the last build's
-- latest ds and not after the latest one, or dated after it themselves (a local
-- date after `before` has a UTC date on or after it)
threshold_stored as (
    select *
    from {{ ref('stg_credit_events') }}
    where event_type = 'drawdown'
        -- a bound on the column, so old row groups are skipped
        and due_on > {{ add_days(-90, before_date) }}
        and (
            due_on <= {{ add_days(-90, '(select loaded_through from periods)') }}
            or (
                due_on > {{ add_days(-30, before_date) }}
                and due_on <= {{ add_days(-30, '(select loaded_through from periods)') }}
            )
            or {{ utc_date('event_at') }} >= {{ before_date }}
        )
),

-- the entries int_credit_line_states counts, new when dated after the last
-- build's latest loaded ds (and not after the latest one)
new_thresholds as (
    {{ overdue_entries('(' ~ dated_credit_events('threshold_stored') ~ ')', '(select loaded_through from periods)') }}
)

select credit_line_id, min(from_date) as from_date
from (
    select credit_line_id, from_date from new_events
    union all
    select credit_line_id, entry_date from new_thresholds
    where entry_date > {{ before_date }}
        and entry_date <= (select periods.loaded_through from periods)
) as candidates
group by credit_line_id
{% else %}
select cast(null as {{ text_type() }}) as credit_line_id, cast(null as date) as from_date
where false
{% endif %}
