{{ config(materialized = 'view') }}
-- Credit events with their program and their event date: the local date of
-- event_at in the program's time zone (kpis.md "Event date"); the rule is the
-- macro dated_credit_events.
-- A view: the events are stored once, in stg_credit_events; readers filter
-- on _ds as well as on event_date (an event's date is never after its
-- delivery's ds), so that a nightly build scans only recent partitions.
{{ dated_credit_events(ref('stg_credit_events')) }}
