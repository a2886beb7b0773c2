-- The reporting period of each program (kpis.md "Rows"): from the program's
-- first enrolled_on (over every merchant version loaded) to the latest ds
-- loaded by any source, the same end for every program, also when an earlier
-- date is re-run. A program without merchants has no period.
with loaded as (
    select max(ds) as loaded_through
    from {{ ref('stg_deliveries') }}
),

first_enrolled as (
    select program_code, min(enrolled_on) as first_enrolled_on
    from {{ ref('int_merchant_versions') }}
    group by program_code
)

select
    first_enrolled.program_code,
    first_enrolled.first_enrolled_on,
    loaded.loaded_through
from first_enrolled
cross join loaded
where first_enrolled.first_enrolled_on <= loaded.loaded_through
