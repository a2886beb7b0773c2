{{
  config(
    materialized = 'incremental',
    incremental_strategy = 'append',
    on_schema_change = 'fail',
    pre_hook = [
      "{% if is_incremental() %}delete from {{ this }} where event_date >= {{ restate_from() }}{% endif %}"
    ]
  )
}}
-- Credit events with their program and their event date: the local date of
-- event_at in the program's time zone (kpis.md "Event date").
-- A merchant never changes program, so the program (and time zone) of an
-- event is that of the merchant named on it, from its earliest version.
-- Incremental: every event dated on or after restate_from is deleted
-- (pre_hook) and read again; such an event lives in a partition with
-- _ds >= restate_from, which stg_credit_events has just re-read.
with merchant_programs as (
    select merchant_id, program_code
    from {{ ref('int_merchant_versions') }}
    where attributed_from = {{ start_of_time() }}
),

events as (
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
        events._ds
    from {{ ref('stg_credit_events') }} as events
    inner join merchant_programs
        on events.merchant_id = merchant_programs.merchant_id
    inner join {{ ref('programs') }} as programs
        on merchant_programs.program_code = programs.program_code
    {% if is_incremental() %}
    where events._ds >= {{ restate_from() }}
    {% endif %}
)

select * from events
{% if is_incremental() %}
where event_date >= {{ restate_from() }}
{% endif %}
