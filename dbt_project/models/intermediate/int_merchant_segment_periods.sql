-- The segment (program, region, business_type, size_class) a merchant's
-- credit lines count in, per period of dates (kpis.md "A credit line ...
-- Its program and segment at d come from the merchant version at d or, when
-- the merchant is not yet known at d, from the merchant's earliest version").
-- Consecutive versions in the same segment are merged, so a new period starts
-- exactly when the merchant moves segment; the first period starts at the
-- start of time.
with versions as (
    select
        merchant_id,
        attributed_from,
        valid_to,
        program_code,
        region,
        business_type,
        size_class,
        case
            when
                lag(program_code) over by_date = program_code
                and lag(region) over by_date = region
                and lag(business_type) over by_date = business_type
                and lag(size_class) over by_date = size_class
                then 0
            else 1
        end as starts_period
    from {{ ref('int_merchant_versions') }}
    window by_date as (partition by merchant_id order by attributed_from)
),

numbered as (
    select
        *,
        sum(starts_period) over (
            partition by merchant_id order by attributed_from
            rows between unbounded preceding and current row
        ) as period_seq
    from versions
)

select
    merchant_id,
    period_seq,
    min(attributed_from) as valid_from,
    max(valid_to) as valid_to,
    program_code,
    region,
    business_type,
    size_class
from numbered
group by merchant_id, period_seq, program_code, region, business_type, size_class
