-- Every figure of every segment on every date of its program's period, at
-- full precision: the running sums of fct_credit_segment_changes and
-- fct_merchant_segment_changes over the program's date spine. Changes dated
-- before the spine starts count from its first date; changes after its end
-- are not reported yet. Includes figures the marts need but do not publish by
-- segment (par90_balance, the 90-day survival cohort's survivors, the exact
-- subsidy x 365).
with calendar as (
    select * from {{ ref('int_program_calendar') }}
),

periods as (
    select * from {{ ref('int_program_periods') }}
),

changes as (
    select
        program_code, region, business_type, size_class, change_date,
        delta_open_credit_lines, delta_credit_limit_total, delta_drawn_to_date, delta_repaid_to_date,
        delta_written_off_to_date, delta_outstanding_balance, delta_par30_balance, delta_par90_balance,
        delta_subsidy_level_x365, delta_subsidy_slope_x365, goods_purchased_on_day,
        0 as delta_enrolled_merchants, 0 as delta_active_merchants, 0 as delta_exited_merchants,
        0 as delta_survival_cohort_90d, 0 as delta_survivors_90d, 0 as delta_reporting_merchants,
        0 as delta_jobs_baseline, 0 as delta_jobs_current, 0 as delta_jobs_retained, 0 as delta_jobs_added,
        0 as delta_merchants_with_credit
    from {{ ref('fct_credit_segment_changes') }}

    union all

    select
        program_code, region, business_type, size_class, change_date,
        0 as delta_open_credit_lines, 0 as delta_credit_limit_total, 0 as delta_drawn_to_date,
        0 as delta_repaid_to_date, 0 as delta_written_off_to_date, 0 as delta_outstanding_balance,
        0 as delta_par30_balance, 0 as delta_par90_balance, 0 as delta_subsidy_level_x365,
        0 as delta_subsidy_slope_x365, 0 as goods_purchased_on_day,
        delta_enrolled_merchants, delta_active_merchants, delta_exited_merchants,
        delta_survival_cohort_90d, delta_survivors_90d, delta_reporting_merchants,
        delta_jobs_baseline, delta_jobs_current, delta_jobs_retained, delta_jobs_added,
        delta_merchants_with_credit
    from {{ ref('fct_merchant_segment_changes') }}
),

-- changes on the spine: earlier ones move to its first date; the day's goods
-- count only on their own date
on_spine as (
    select
        changes.program_code, changes.region, changes.business_type, changes.size_class,
        case
            when changes.change_date < periods.first_enrolled_on then periods.first_enrolled_on
            else changes.change_date
        end as as_of_date,
        changes.delta_open_credit_lines, changes.delta_credit_limit_total, changes.delta_drawn_to_date,
        changes.delta_repaid_to_date, changes.delta_written_off_to_date, changes.delta_outstanding_balance,
        changes.delta_par30_balance, changes.delta_par90_balance, changes.delta_subsidy_level_x365,
        changes.delta_subsidy_slope_x365,
        case
            when changes.change_date < periods.first_enrolled_on then 0 else changes.goods_purchased_on_day
        end as goods_purchased_on_day,
        changes.delta_enrolled_merchants, changes.delta_active_merchants, changes.delta_exited_merchants,
        changes.delta_survival_cohort_90d, changes.delta_survivors_90d, changes.delta_reporting_merchants,
        changes.delta_jobs_baseline, changes.delta_jobs_current, changes.delta_jobs_retained,
        changes.delta_jobs_added, changes.delta_merchants_with_credit
    from changes
    inner join periods
        on changes.program_code = periods.program_code
    where changes.change_date <= periods.loaded_through
),

daily_changes as (
    select
        program_code, region, business_type, size_class, as_of_date,
        sum(delta_open_credit_lines) as delta_open_credit_lines,
        sum(delta_credit_limit_total) as delta_credit_limit_total,
        sum(delta_drawn_to_date) as delta_drawn_to_date,
        sum(delta_repaid_to_date) as delta_repaid_to_date,
        sum(delta_written_off_to_date) as delta_written_off_to_date,
        sum(delta_outstanding_balance) as delta_outstanding_balance,
        sum(delta_par30_balance) as delta_par30_balance,
        sum(delta_par90_balance) as delta_par90_balance,
        sum(delta_subsidy_level_x365) as delta_subsidy_level_x365,
        sum(delta_subsidy_slope_x365) as delta_subsidy_slope_x365,
        sum(goods_purchased_on_day) as goods_purchased_on_day,
        sum(delta_enrolled_merchants) as delta_enrolled_merchants,
        sum(delta_active_merchants) as delta_active_merchants,
        sum(delta_exited_merchants) as delta_exited_merchants,
        sum(delta_survival_cohort_90d) as delta_survival_cohort_90d,
        sum(delta_survivors_90d) as delta_survivors_90d,
        sum(delta_reporting_merchants) as delta_reporting_merchants,
        sum(delta_jobs_baseline) as delta_jobs_baseline,
        sum(delta_jobs_current) as delta_jobs_current,
        sum(delta_jobs_retained) as delta_jobs_retained,
        sum(delta_jobs_added) as delta_jobs_added,
        sum(delta_merchants_with_credit) as delta_merchants_with_credit
    from on_spine
    group by program_code, region, business_type, size_class, as_of_date
),

segments as (
    select distinct program_code, region, business_type, size_class
    from daily_changes
),

grid as (
    select
        segments.program_code, segments.region, segments.business_type, segments.size_class,
        calendar.as_of_date
    from segments
    inner join calendar
        on segments.program_code = calendar.program_code
),

running as (
    select
        grid.program_code,
        grid.as_of_date,
        grid.region,
        grid.business_type,
        grid.size_class,
        {%- for measure in [
            'enrolled_merchants', 'active_merchants', 'exited_merchants', 'open_credit_lines',
            'merchants_with_credit', 'credit_limit_total', 'drawn_to_date', 'repaid_to_date',
            'written_off_to_date', 'outstanding_balance', 'par30_balance', 'par90_balance',
            'subsidy_level_x365', 'subsidy_slope_x365', 'reporting_merchants', 'jobs_baseline',
            'jobs_current', 'jobs_retained', 'jobs_added', 'survival_cohort_90d', 'survivors_90d'] %}
        sum(coalesce(daily_changes.delta_{{ measure }}, 0)) over segment_to_date as {{ measure }},
        {%- endfor %}
        coalesce(daily_changes.goods_purchased_on_day, 0) as goods_purchased_on_day
    from grid
    left join daily_changes
        on grid.program_code = daily_changes.program_code
            and grid.region = daily_changes.region
            and grid.business_type = daily_changes.business_type
            and grid.size_class = daily_changes.size_class
            and grid.as_of_date = daily_changes.as_of_date
    window segment_to_date as (
        partition by grid.program_code, grid.region, grid.business_type, grid.size_class
        order by grid.as_of_date
        rows between unbounded preceding and current row
    )
)

{%- set subsidy_to_date_x365 = 'running.subsidy_level_x365 + running.subsidy_slope_x365 * '
                               ~ day_number('running.as_of_date') %}

select
    running.program_code,
    running.as_of_date,
    running.region,
    running.business_type,
    running.size_class,
    cast(running.enrolled_merchants as bigint) as enrolled_merchants,
    cast(running.active_merchants as bigint) as active_merchants,
    cast(running.exited_merchants as bigint) as exited_merchants,
    cast(running.open_credit_lines as bigint) as open_credit_lines,
    cast(running.merchants_with_credit as bigint) as merchants_with_credit,
    cast(running.credit_limit_total as decimal(38, 2)) as credit_limit_total,
    cast(running.drawn_to_date as decimal(38, 2)) as drawn_to_date,
    cast(running.goods_purchased_on_day as decimal(38, 2)) as goods_purchased_on_day,
    cast(running.repaid_to_date as decimal(38, 2)) as repaid_to_date,
    cast(running.written_off_to_date as decimal(38, 2)) as written_off_to_date,
    cast(running.outstanding_balance as decimal(38, 2)) as outstanding_balance,
    cast(running.par30_balance as decimal(38, 2)) as par30_balance,
    cast(running.par90_balance as decimal(38, 2)) as par90_balance,
    case
        when programs.has_benchmark_rate then cast({{ subsidy_to_date_x365 }} as decimal(38, 8))
    end as interest_subsidy_cost_to_date_x365,
    case
        when programs.has_benchmark_rate then {{ div_round(subsidy_to_date_x365, '365', 2, num_scale=8, den_scale=0) }}
    end as interest_subsidy_cost_to_date,
    cast(running.reporting_merchants as bigint) as reporting_merchants,
    cast(running.jobs_baseline as bigint) as jobs_baseline,
    cast(running.jobs_current as bigint) as jobs_current,
    cast(running.jobs_retained as bigint) as jobs_retained,
    cast(running.jobs_added as bigint) as jobs_added,
    cast(running.survival_cohort_90d as bigint) as survival_cohort_90d,
    cast(running.survivors_90d as bigint) as survivors_90d
from running
inner join {{ ref('dim_programs') }} as programs
    on running.program_code = programs.program_code
