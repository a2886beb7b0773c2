{#- Credit events with their program and their event date: the local date of
    event_at in the program's time zone (kpis.md "Event date"). A merchant
    never changes program, so the program (and time zone) of an event is that
    of the merchant named on it, from its earliest version. `events`: a
    relation or subquery with the columns of stg_credit_events. The view
    int_credit_events is this over every stored event; a nightly build dates
    the few events it needs before reading the rest (int_credit_line_states,
    int_credit_line_restates). -#}
{% macro dated_credit_events(events) -%}
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
    from {{ events }} as events
    inner join (
        select merchant_id, program_code
        from {{ ref('int_merchant_versions') }}
        where attributed_from = {{ start_of_time() }}
    ) as merchant_programs
        on events.merchant_id = merchant_programs.merchant_id
    inner join {{ ref('programs') }} as programs
        on merchant_programs.program_code = programs.program_code
{%- endmacro %}

{#- The UTC date of an instant: a bound for its local date in any time zone
    (local date >= d implies UTC date >= d - 1), on the stored column. -#}
{% macro utc_date(ts) -%}
  {{ local_date(ts, "'UTC'") }}
{%- endmacro %}

{#- Overdue entries (int_credit_line_states, int_credit_line_restates): a
    drawdown counts towards overdue_excess_30 (90) from max(its event date,
    due_on + 30 (90)). A threshold after the latest loaded ds is not reached
    yet: only drawdowns with due_on <= loaded_through - 30 count (the next
    builds restate from there). `drawdowns` is a relation or CTE of credit
    events; the SQL ends in a WHERE clause that callers may extend with AND. -#}
{% macro overdue_entries(drawdowns, loaded_through) -%}
    select
        drawdowns.credit_line_id,
        thresholds.days_overdue,
        case
            when drawdowns.event_date > {{ add_days('thresholds.days_overdue', 'drawdowns.due_on') }}
                then drawdowns.event_date
            else {{ add_days('thresholds.days_overdue', 'drawdowns.due_on') }}
        end as entry_date,
        drawdowns.amount
    from {{ drawdowns }} as drawdowns
    cross join (select 30 as days_overdue union all select 90 as days_overdue) as thresholds
    where drawdowns.event_type = 'drawdown'
      and drawdowns.due_on is not null
      and drawdowns.due_on <= {{ add_days(-30, loaded_through) }}
{%- endmacro %}

{#- Whether a nightly build restates the credit-line states line by line
    (int_build_plan sets both plan values only when that is exact; see
    int_credit_line_restates). -#}
{% macro restate_lines_by_line() -%}
  {#- line by line deletes some lines' rows of a date: not by partition (deletes_rows) -#}
  {{ return(deletes_rows() and build_plan('new_rows_since') is not none
            and build_plan('loaded_through_before') is not none) }}
{%- endmacro %}
