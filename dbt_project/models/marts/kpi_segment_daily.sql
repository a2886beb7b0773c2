-- kpis.md kpi_segment_daily: the additive figures of kpi_program_daily by
-- program, date and segment (region, business_type, size_class); a row only
-- when any of them is non-zero. Money rounded half away from zero to 2
-- decimals (only the subsidy has more before rounding).
select
    cast(program_code as {{ text_type() }}) as program_code,
    cast(as_of_date as date) as as_of_date,
    cast(region as {{ text_type() }}) as region,
    cast(business_type as {{ text_type() }}) as business_type,
    cast(size_class as {{ text_type() }}) as size_class,
    cast(enrolled_merchants as bigint) as enrolled_merchants,
    cast(active_merchants as bigint) as active_merchants,
    cast(exited_merchants as bigint) as exited_merchants,
    cast(open_credit_lines as bigint) as open_credit_lines,
    cast(merchants_with_credit as bigint) as merchants_with_credit,
    {{ round_money('credit_limit_total') }} as credit_limit_total,
    {{ round_money('drawn_to_date') }} as drawn_to_date,
    {{ round_money('goods_purchased_on_day') }} as goods_purchased_on_day,
    {{ round_money('repaid_to_date') }} as repaid_to_date,
    {{ round_money('written_off_to_date') }} as written_off_to_date,
    {{ round_money('outstanding_balance') }} as outstanding_balance,
    {{ round_money('par30_balance') }} as par30_balance,
    cast(interest_subsidy_cost_to_date as decimal(18, 2)) as interest_subsidy_cost_to_date,
    cast(reporting_merchants as bigint) as reporting_merchants,
    cast(jobs_baseline as bigint) as jobs_baseline,
    cast(jobs_current as bigint) as jobs_current,
    cast(jobs_retained as bigint) as jobs_retained,
    cast(jobs_added as bigint) as jobs_added
from {{ ref('fct_segment_daily') }}
where enrolled_merchants <> 0
    or active_merchants <> 0
    or exited_merchants <> 0
    or open_credit_lines <> 0
    or merchants_with_credit <> 0
    or credit_limit_total <> 0
    or drawn_to_date <> 0
    or goods_purchased_on_day <> 0
    or repaid_to_date <> 0
    or written_off_to_date <> 0
    or outstanding_balance <> 0
    or par30_balance <> 0
    or coalesce(interest_subsidy_cost_to_date, 0) <> 0
    or reporting_merchants <> 0
    or jobs_baseline <> 0
    or jobs_current <> 0
    or jobs_retained <> 0
    or jobs_added <> 0
