-- The incremental models rely on it: an event's local date is never after
-- the ds of the delivery that carried it (extracts.md: event_at <= end of
-- ds in the program's time zone; landing enforces it). Were it broken, a
-- nightly build could miss the event. Fails the build.
{{ config(severity = 'error') }}
select event_id, event_date, _ds
from {{ ref('int_credit_events') }}
-- the rows staging re-read or appended this build (the others were checked when read)
where {{ reread_rows('credit_events') }}
    and event_date > _ds
