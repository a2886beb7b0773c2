-- kpis.md kpi_program_daily: one row per program and calendar date of its
-- reporting period. Additive figures are sums over segments (exact, so the
-- segments of kpi_segment_daily add up to them); interest_subsidy_cost_to_date
-- is the sum of the rounded segment figures (kpis.md). Rates are exact
-- quotients rounded half away from zero to 6 decimals, null on a zero
-- denominator.
with totals as (
    select
        program_code,
        as_of_date,
        sum(enrolled_merchants) as enrolled_merchants,
        sum(active_merchants) as active_merchants,
        sum(exited_merchants) as exited_merchants,
        sum(open_credit_lines) as open_credit_lines,
        sum(merchants_with_credit) as merchants_with_credit,
        sum(credit_limit_total) as credit_limit_total,
        sum(drawn_to_date) as drawn_to_date,
        sum(goods_purchased_on_day) as goods_purchased_on_day,
        sum(repaid_to_date) as repaid_to_date,
        sum(written_off_to_date) as written_off_to_date,
        sum(outstanding_balance) as outstanding_balance,
        sum(par30_balance) as par30_balance,
        sum(par90_balance) as par90_balance,
        sum(interest_subsidy_cost_to_date) as interest_subsidy_cost_to_date,
        sum(reporting_merchants) as reporting_merchants,
        sum(jobs_baseline) as jobs_baseline,
        sum(jobs_current) as jobs_current,
        sum(jobs_retained) as jobs_retained,
        sum(jobs_added) as jobs_added,
        sum(survival_cohort_90d) as survival_cohort_90d,
        sum(survivors_90d) as survivors_90d
    from {{ ref('fct_segment_daily') }}
    group by program_code, as_of_date
),

daily as (
    select
        calendar.program_code,
        calendar.as_of_date,
        coalesce(totals.enrolled_merchants, 0) as enrolled_merchants,
        coalesce(totals.active_merchants, 0) as active_merchants,
        coalesce(totals.exited_merchants, 0) as exited_merchants,
        coalesce(totals.open_credit_lines, 0) as open_credit_lines,
        coalesce(totals.merchants_with_credit, 0) as merchants_with_credit,
        coalesce(totals.credit_limit_total, 0) as credit_limit_total,
        coalesce(totals.drawn_to_date, 0) as drawn_to_date,
        coalesce(totals.goods_purchased_on_day, 0) as goods_purchased_on_day,
        coalesce(totals.repaid_to_date, 0) as repaid_to_date,
        coalesce(totals.written_off_to_date, 0) as written_off_to_date,
        coalesce(totals.outstanding_balance, 0) as outstanding_balance,
        coalesce(totals.par30_balance, 0) as par30_balance,
        coalesce(totals.par90_balance, 0) as par90_balance,
        case when programs.has_benchmark_rate then coalesce(totals.interest_subsidy_cost_to_date, 0) end
            as interest_subsidy_cost_to_date,
        coalesce(totals.reporting_merchants, 0) as reporting_merchants,
        coalesce(totals.jobs_baseline, 0) as jobs_baseline,
        coalesce(totals.jobs_current, 0) as jobs_current,
        coalesce(totals.jobs_retained, 0) as jobs_retained,
        coalesce(totals.jobs_added, 0) as jobs_added,
        coalesce(totals.survival_cohort_90d, 0) as survival_cohort_90d,
        coalesce(totals.survivors_90d, 0) as survivors_90d
    from {{ ref('int_program_calendar') }} as calendar
    inner join {{ ref('dim_programs') }} as programs
        on calendar.program_code = programs.program_code
    left join totals
        on calendar.program_code = totals.program_code
            and calendar.as_of_date = totals.as_of_date
)

select
    cast(program_code as {{ text_type() }}) as program_code,
    cast(as_of_date as date) as as_of_date,
    cast(enrolled_merchants as bigint) as enrolled_merchants,
    cast(active_merchants as bigint) as active_merchants,
    cast(exited_merchants as bigint) as exited_merchants,
    cast(open_credit_lines as bigint) as open_credit_lines,
    cast(merchants_with_credit as bigint) as merchants_with_credit,
    {{ round_money('credit_limit_total') }} as credit_limit_total,
    cast(
        {{ div_round('credit_limit_total', 'merchants_with_credit', 2, num_scale=2, den_scale=0) }} as decimal(18, 2)
    ) as avg_limit_per_merchant,
    {{ round_money('drawn_to_date') }} as drawn_to_date,
    {{ round_money('goods_purchased_on_day') }} as goods_purchased_on_day,
    {{ round_money('repaid_to_date') }} as repaid_to_date,
    {{ round_money('written_off_to_date') }} as written_off_to_date,
    {{ round_money('outstanding_balance') }} as outstanding_balance,
    cast({{ div_round('outstanding_balance', 'credit_limit_total', 6) }} as decimal(12, 6)) as utilization_rate,
    {{ round_money('par30_balance') }} as par30_balance,
    cast({{ div_round('par30_balance', 'outstanding_balance', 6) }} as decimal(12, 6)) as par30_rate,
    cast({{ div_round('par90_balance', 'outstanding_balance', 6) }} as decimal(12, 6)) as par90_rate,
    cast({{ div_round('written_off_to_date', 'drawn_to_date', 6) }} as decimal(12, 6)) as default_rate,
    {{ round_money('interest_subsidy_cost_to_date') }} as interest_subsidy_cost_to_date,
    cast(reporting_merchants as bigint) as reporting_merchants,
    cast(
        {{ div_round('reporting_merchants', 'enrolled_merchants', 6, num_scale=0, den_scale=0) }} as decimal(12, 6)
    ) as reporting_coverage,
    cast(jobs_baseline as bigint) as jobs_baseline,
    cast(jobs_current as bigint) as jobs_current,
    cast(jobs_retained as bigint) as jobs_retained,
    cast(jobs_added as bigint) as jobs_added,
    cast(
        {{ div_round('jobs_retained', 'jobs_baseline', 6, num_scale=0, den_scale=0) }} as decimal(12, 6)
    ) as jobs_retention_rate,
    cast(survival_cohort_90d as bigint) as survival_cohort_90d,
    cast(
        {{ div_round('survivors_90d', 'survival_cohort_90d', 6, num_scale=0, den_scale=0) }} as decimal(12, 6)
    ) as survival_rate_90d
from daily
