-- kpis.md kpi_segment_daily rule: for every date and additive column, the
-- segments sum exactly to kpi_program_daily (merchants_with_credit and the
-- rounded interest subsidy too). Fails the build.
{{ config(severity = 'error') }}
{%- set additive = [
    'enrolled_merchants', 'active_merchants', 'exited_merchants', 'open_credit_lines',
    'merchants_with_credit', 'credit_limit_total', 'drawn_to_date', 'goods_purchased_on_day',
    'repaid_to_date', 'written_off_to_date', 'outstanding_balance', 'par30_balance',
    'interest_subsidy_cost_to_date', 'reporting_merchants', 'jobs_baseline', 'jobs_current',
    'jobs_retained', 'jobs_added'] %}
-- The loops below write SQL whose layout the linter cannot model: no LT02 (indentation) from here on.
-- noqa: disable=LT02
with segments as (
    select
        program_code,
        as_of_date,
        {%- for c in additive %}
        sum({{ c }}) as {{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('kpi_segment_daily') }}
    group by program_code, as_of_date
)

select programs.program_code, programs.as_of_date
from {{ ref('kpi_program_daily') }} as programs
left join segments
    on programs.program_code = segments.program_code
        and programs.as_of_date = segments.as_of_date
where
    {%- for c in additive %}
    {%- if c == 'interest_subsidy_cost_to_date' %}
    coalesce(programs.{{ c }}, 0) <> coalesce(segments.{{ c }}, 0)
    or (programs.{{ c }} is null) <> (segments.{{ c }} is null and segments.program_code is not null
                                      or programs.{{ c }} is null and segments.program_code is null)
    {%- else %}
    programs.{{ c }} <> coalesce(segments.{{ c }}, 0)
    {%- endif %}
    {{ 'or' if not loop.last }}
    {%- endfor %}
