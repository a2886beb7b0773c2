-- Every calendar date of each program's reporting period (int_program_periods):
-- the date spine of the KPI marts, so that every date is present.
select
    program_code,
    {{ date_series('first_enrolled_on', 'loaded_through') }} as as_of_date
from {{ ref('int_program_periods') }}
