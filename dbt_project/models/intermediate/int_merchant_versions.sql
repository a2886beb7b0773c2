-- The merchant version in force on each business date (SCD type 2 at day grain).
-- kpis.md "Merchant version at d": the version with the greatest updated_at
-- <= end of d (local calendar of the program), so of several versions written
-- on one local date the last one is in force at the end of that date.
-- "Before its first updated_at, a merchant's earliest version is in force from
-- that version's enrolled_on": a prehistory row covers [enrolled_on, first
-- local updated date - 1]. Before both, the merchant is not known.
-- attributed_from extends the first row back to the start of time: a credit
-- line of a merchant not yet known takes its segment from the earliest version.
with versions as (
    select
        merchants.*,
        programs.time_zone,
        {{ local_date('merchants.updated_at', 'programs.time_zone') }} as updated_on
    from {{ ref('stg_merchants') }} as merchants
    inner join {{ ref('programs') }} as programs
        on merchants.program_code = programs.program_code
),

ordered as (
    select
        *,
        row_number() over (partition by merchant_id order by updated_at) as version_seq,
        row_number() over (
            partition by merchant_id, updated_on
            order by updated_at desc, _ds desc, _line desc
        ) as last_of_day
    from versions
),

day_versions as (
    select
        merchant_id,
        program_code,
        region,
        city,
        business_type,
        size_class,
        status,
        enrolled_on,
        updated_at,
        updated_on as valid_from,
        false as is_prehistory
    from ordered
    where last_of_day = 1
),

prehistory as (
    -- the earliest version, in force from its enrolled_on until the day
    -- before the first local date that has a version
    select
        earliest.merchant_id,
        earliest.program_code,
        earliest.region,
        earliest.city,
        earliest.business_type,
        earliest.size_class,
        earliest.status,
        earliest.enrolled_on,
        earliest.updated_at,
        earliest.enrolled_on as valid_from,
        true as is_prehistory
    from ordered as earliest
    where earliest.version_seq = 1
        and earliest.enrolled_on < earliest.updated_on
),

all_rows as (
    select * from day_versions
    union all
    select * from prehistory
),

bounded as (
    select
        *,
        coalesce(
            {{ add_days(-1, 'lead(valid_from) over (partition by merchant_id order by valid_from)') }},
            {{ end_of_time() }}
        ) as valid_to,
        row_number() over (partition by merchant_id order by valid_from) as row_seq
    from all_rows
)

select
    merchant_id,
    valid_from,
    cast(valid_to as date) as valid_to,
    case when row_seq = 1 then {{ start_of_time() }} else valid_from end as attributed_from,
    is_prehistory,
    program_code,
    region,
    city,
    business_type,
    size_class,
    status,
    enrolled_on,
    updated_at
from bounded
