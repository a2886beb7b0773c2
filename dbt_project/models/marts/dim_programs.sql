-- The programs the warehouse reports on (seed `programs`) with their
-- reporting period and whether their currency has a benchmark-rate series
-- (without one, the interest subsidy is not defined: kpis.md).
select
    programs.program_code,
    programs.program_name,
    programs.country_code,
    programs.currency,
    programs.time_zone,
    programs.launched_on,
    periods.first_enrolled_on,
    periods.loaded_through,
    exists(
        select 1 from {{ ref('benchmark_rates') }} as rates
        where rates.currency = programs.currency
    ) as has_benchmark_rate
from {{ ref('programs') }} as programs
left join {{ ref('int_program_periods') }} as periods
    on programs.program_code = periods.program_code
