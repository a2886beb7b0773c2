-- How the merchant figures of each segment change on each date: each figure
-- is a set of periods (a merchant counts from valid_from to valid_to), turned
-- into +1 / +value on valid_from and the opposite on valid_to + 1. A
-- segment's figure on date d is the running sum of its changes up to d
-- (fct_segment_daily). Rebuilt whole each night: it scales with merchants.
with versions as (
    select * from {{ ref('int_merchant_versions') }}
),

-- kpis.md "Enrolled at d": known at d and that version's enrolled_on <= d
enrolled as (
    select
        versions.*,
        case
            when versions.enrolled_on > versions.valid_from then versions.enrolled_on else versions.valid_from
        end as enrolled_from
    from versions
    where versions.enrolled_on <= versions.valid_to
),

-- survival_cohort_90d: enrolled at d with enrolled_on <= d - 90; a survivor
-- if its status at enrolled_on + 90 (version at that date, or the earliest
-- version if none) is not exited
cohort as (
    select
        enrolled.*,
        survival.day_90,
        case when survival.is_survivor then 1 else 0 end as is_survivor
    from enrolled
    inner join {{ ref('int_merchant_survival_90d') }} as survival
        on enrolled.merchant_id = survival.merchant_id
            and enrolled.enrolled_on = survival.enrolled_on
),

periods as (
    select
        program_code, region, business_type, size_class, enrolled_from as valid_from, valid_to,
        1 as enrolled_merchants,
        case when status = 'active' then 1 else 0 end as active_merchants,
        case when status = 'exited' then 1 else 0 end as exited_merchants,
        0 as survival_cohort_90d, 0 as survivors_90d,
        0 as reporting_merchants, 0 as jobs_baseline, 0 as jobs_current, 0 as jobs_retained, 0 as jobs_added,
        0 as merchants_with_credit
    from enrolled

    union all

    select
        program_code, region, business_type, size_class,
        case when day_90 > enrolled_from then day_90 else enrolled_from end as valid_from, valid_to,
        0 as enrolled_merchants, 0 as active_merchants, 0 as exited_merchants,
        1 as survival_cohort_90d, is_survivor as survivors_90d,
        0 as reporting_merchants, 0 as jobs_baseline, 0 as jobs_current, 0 as jobs_retained, 0 as jobs_added,
        0 as merchants_with_credit
    from cohort
    where day_90 <= valid_to

    union all

    -- reporting: an enrolled merchant with an effective report
    select
        enrolled.program_code, enrolled.region, enrolled.business_type, enrolled.size_class,
        case
            when reports.valid_from > enrolled.enrolled_from then reports.valid_from else enrolled.enrolled_from
        end as valid_from,
        case when reports.valid_to < enrolled.valid_to then reports.valid_to else enrolled.valid_to end as valid_to,
        0 as enrolled_merchants, 0 as active_merchants, 0 as exited_merchants,
        0 as survival_cohort_90d, 0 as survivors_90d,
        1 as reporting_merchants, reports.baseline_employees as jobs_baseline, reports.employees as jobs_current,
        reports.jobs_retained, reports.jobs_added,
        0 as merchants_with_credit
    from enrolled
    inner join {{ ref('int_employment_reports_effective') }} as reports
        on enrolled.merchant_id = reports.merchant_id
            and enrolled.valid_to >= reports.valid_from
            and enrolled.enrolled_from <= reports.valid_to

    union all

    -- merchants_with_credit: in the segment its lines count in
    select
        segments.program_code, segments.region, segments.business_type, segments.size_class,
        case
            when credit.valid_from > segments.valid_from then credit.valid_from else segments.valid_from
        end as valid_from,
        case when credit.valid_to < segments.valid_to then credit.valid_to else segments.valid_to end as valid_to,
        0 as enrolled_merchants, 0 as active_merchants, 0 as exited_merchants,
        0 as survival_cohort_90d, 0 as survivors_90d,
        0 as reporting_merchants, 0 as jobs_baseline, 0 as jobs_current, 0 as jobs_retained, 0 as jobs_added,
        1 as merchants_with_credit
    from {{ ref('int_merchant_credit_periods') }} as credit
    inner join {{ ref('int_merchant_segment_periods') }} as segments
        on credit.merchant_id = segments.merchant_id
            and credit.valid_from <= segments.valid_to
            and credit.valid_to >= segments.valid_from
),

edges as (
    select
        program_code, region, business_type, size_class, valid_from as change_date,
        enrolled_merchants, active_merchants, exited_merchants, survival_cohort_90d, survivors_90d,
        reporting_merchants, jobs_baseline, jobs_current, jobs_retained, jobs_added, merchants_with_credit
    from periods

    union all

    select
        program_code, region, business_type, size_class, {{ add_days(1, 'valid_to') }} as change_date,
        -enrolled_merchants as enrolled_merchants, -active_merchants as active_merchants,
        -exited_merchants as exited_merchants, -survival_cohort_90d as survival_cohort_90d,
        -survivors_90d as survivors_90d, -reporting_merchants as reporting_merchants,
        -jobs_baseline as jobs_baseline, -jobs_current as jobs_current, -jobs_retained as jobs_retained,
        -jobs_added as jobs_added, -merchants_with_credit as merchants_with_credit
    from periods
    where valid_to < {{ end_of_time() }}
)

select
    program_code,
    region,
    business_type,
    size_class,
    change_date,
    cast(sum(enrolled_merchants) as bigint) as delta_enrolled_merchants,
    cast(sum(active_merchants) as bigint) as delta_active_merchants,
    cast(sum(exited_merchants) as bigint) as delta_exited_merchants,
    cast(sum(survival_cohort_90d) as bigint) as delta_survival_cohort_90d,
    cast(sum(survivors_90d) as bigint) as delta_survivors_90d,
    cast(sum(reporting_merchants) as bigint) as delta_reporting_merchants,
    cast(sum(jobs_baseline) as bigint) as delta_jobs_baseline,
    cast(sum(jobs_current) as bigint) as delta_jobs_current,
    cast(sum(jobs_retained) as bigint) as delta_jobs_retained,
    cast(sum(jobs_added) as bigint) as delta_jobs_added,
    cast(sum(merchants_with_credit) as bigint) as delta_merchants_with_credit
from edges
group by program_code, region, business_type, size_class, change_date
