{{ config(materialized = 'view') }}
-- Credit events with their program and their event date: the local date of
-- event_at in the program's time zone (kpis.md "Event date").
-- A merchant never changes program, so the program (and time zone) of an
-- event is that of the merchant named on it, from its earliest version.
-- A view: the events are stored once, in stg_credit_events; readers filter
-- on _ds as well as on event_date (an event's date is never after its
-- delivery's ds), so that a nightly build scans only recent partitions.
with merchant_programs as (
    select merchant_id, program_code
    from {{ ref('int_merchant_versions') }}
    where attributed_from = {{ start_of_time() }}
)

select
    events.event_id,
    events.credit_line_id,
    events.merchant_id,
    merchant_programs.program_code,
    programs.currency,
    events.event_type,
    events.event_at,
    {{ local_date('events.event_at', 'programs.time_zone') }} as event_date,
    events.amount,
    events.annual_interest_rate,
    events.due_on,
    events._ds,
    events._landed_at
from {{ ref('stg_credit_events') }} as events
inner join merchant_programs
    on events.merchant_id = merchant_programs.merchant_id
inner join {{ ref('programs') }} as programs
    on merchant_programs.program_code = programs.program_code
