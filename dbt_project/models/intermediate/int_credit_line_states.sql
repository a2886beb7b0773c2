{{
  config(
    materialized = 'incremental',
    on_schema_change = 'fail',
    post_hook = ["{{ credit_line_states_other_passes() }}"],
    **restating_config('state_date', [
      "{% if is_incremental() and restate_lines_by_line() %}
       delete from {{ this }} as s using {{ ref('int_credit_line_restates') }} as r
       where s.credit_line_id = r.credit_line_id and s.state_date >= r.from_date
       {% elif is_incremental() %}delete from {{ this }} where state_date >= {{ restate_from() }}{% endif %}"
    ], 'restate_from()')
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
  lines x days, and one window pass computes them.

  Days past due without per-day allocation: repayments and write-offs are
  allocated to drawdowns in order of (due_on, event_at, event_id), so the
  drawdowns with due_on <= x are a prefix of that order and one of them keeps
  an unallocated remainder exactly when their total exceeds everything paid.
  Hence days past due at d >= k (k >= 1) exactly when
      (sum of drawdowns to date with due_on <= d - k) - (repayments + write-offs to date) > 0,
  i.e. overdue_excess_k(d) > 0, where each drawdown's amount enters
  overdue_excess_k on max(its event date, due_on + k).

  Subsidy (kpis.md interest_subsidy_cost_to_date), kept x 365 so that it stays
  exact: the daily cost x 365 is outstanding x max(0, benchmark - line rate)
  (subsidy_slope_x365), constant until the next row. Subsidy to date x 365 on
  date d is a linear function sum(delta_subsidy_level_x365) +
  day_number(d) x sum(delta_subsidy_slope_x365) over the line's rows up to d;
  when the slope changes by s on date e, the level changes by -s x
  (day_number(e) - 1), which keeps the function continuous.

  delta_* columns: the change of each additive measure from the line's
  previous row; every published figure is a running sum of these deltas.

  Incremental, line by line (vars new_rows_since and loaded_through_before
  set): each line of int_credit_line_restates has its rows dated on or after
  its from_date deleted (pre_hook) and recomputed from its last row before it
  (the base) plus its events, overdue thresholds and rate changes dated on or
  after it; every other line keeps its rows. A late posting restates its own
  line from its date, not every line.
  Incremental, whole (those vars not set): the same with every row dated on or
  after restate_from, for every line that changes on or after it.
-#}
-- depends_on: {{ ref('int_credit_line_restates') }}
-- depends_on: {{ ref('stg_credit_events') }}
-- depends_on: {{ ref('int_merchant_versions') }}
-- depends_on: {{ ref('programs') }}

{{ credit_line_states(0, line_passes()) }}
