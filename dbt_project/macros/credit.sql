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
    (program_reporting.build sets both plan values only when that is exact; see
    int_credit_line_restates). -#}
{% macro restate_lines_by_line() -%}
  {{ return(build_plan('new_rows_since') is not none and build_plan('loaded_through_before') is not none) }}
{%- endmacro %}
