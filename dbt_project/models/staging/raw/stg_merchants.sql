-- One row per merchant version: every (merchant_id, updated_at) once.
-- extracts.md: between two rows with the same updated_at, the one from the
-- later ds, then the later line of the file, wins; an identical row delivered
-- twice is the same version.
-- The night's plan (int_build_plan) reads this table as the last build left it,
-- to see which merchants changed: the plan first.
-- depends_on: {{ ref('int_build_plan') }}

with source as (
    select * from {{ source('raw', 'merchants') }}
),

typed as (
    select
        cast(merchant_id as {{ text_type() }}) as merchant_id,
        cast(program_code as {{ text_type() }}) as program_code,
        cast(business_name as {{ text_type() }}) as business_name,
        cast(region as {{ text_type() }}) as region,
        cast(city as {{ text_type() }}) as city,
        cast(business_type as {{ text_type() }}) as business_type,
        cast(size_class as {{ text_type() }}) as size_class,
        cast(registered_on as date) as registered_on,
        cast(enrolled_on as date) as enrolled_on,
        cast(status as {{ text_type() }}) as status,
        cast(updated_at as {{ instant_type() }}) as updated_at,
        cast(_ds as date) as _ds,
        cast(_file as {{ text_type() }}) as _file,
        cast(_line as bigint) as _line,
        cast(_landed_at as {{ instant_type() }}) as _landed_at
    from source
),

ranked as (
    select
        *,
        row_number() over (
            partition by merchant_id, updated_at
            order by _ds desc, _line desc
        ) as tie_rank
    from typed
)

select
    merchant_id,
    program_code,
    business_name,
    region,
    city,
    business_type,
    size_class,
    registered_on,
    enrolled_on,
    status,
    updated_at,
    _ds,
    _file,
    _line,
    _landed_at
from ranked
where tie_rank = 1
