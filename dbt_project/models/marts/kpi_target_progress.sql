-- kpis.md kpi_target_progress: one row per program, date and target
-- (seed program_targets): the published figure of the target's
-- kpi_program_daily column and the share of the target reached.
{%- set metrics = [
    'enrolled_merchants', 'active_merchants', 'exited_merchants', 'open_credit_lines',
    'merchants_with_credit', 'credit_limit_total', 'avg_limit_per_merchant', 'drawn_to_date',
    'goods_purchased_on_day', 'repaid_to_date', 'written_off_to_date', 'outstanding_balance',
    'utilization_rate', 'par30_balance', 'par30_rate', 'par90_rate', 'default_rate',
    'interest_subsidy_cost_to_date', 'reporting_merchants', 'reporting_coverage', 'jobs_baseline',
    'jobs_current', 'jobs_retained', 'jobs_added', 'jobs_retention_rate', 'survival_cohort_90d',
    'survival_rate_90d'] %}
with progress as (
    select
        daily.program_code,
        daily.as_of_date,
        targets.metric,
        cast(targets.target_value as decimal(18, 2)) as target_value,
        case targets.metric
            {%- for metric in metrics %}
            when '{{ metric }}' then cast(daily.{{ metric }} as decimal(38, 6))
            {%- endfor %}
        end as actual_exact
    from {{ ref('kpi_program_daily') }} as daily
    inner join {{ ref('program_targets') }} as targets
        on daily.program_code = targets.program_code
)

select
    cast(program_code as {{ text_type() }}) as program_code,
    cast(as_of_date as date) as as_of_date,
    cast(metric as {{ text_type() }}) as metric,
    target_value,
    {{ round_money('actual_exact') }} as actual_value,
    -- the published actual_value, as kpis.md defines progress_rate
    cast({{ div_round(round_money('actual_exact'), 'target_value', 6) }} as decimal(12, 6)) as progress_rate
from progress
