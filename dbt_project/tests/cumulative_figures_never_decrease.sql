-- drawn_to_date, repaid_to_date and written_off_to_date are sums of
-- non-negative amounts to date: for a program they never decrease from one
-- date to the next. Fails the build.
{{ config(severity = 'error') }}
with ordered as (
    select
        program_code,
        as_of_date,
        drawn_to_date,
        repaid_to_date,
        written_off_to_date,
        lag(drawn_to_date) over by_date as prev_drawn,
        lag(repaid_to_date) over by_date as prev_repaid,
        lag(written_off_to_date) over by_date as prev_written_off
    from {{ ref('kpi_program_daily') }}
    window by_date as (partition by program_code order by as_of_date)
)

select *
from ordered
where drawn_to_date < prev_drawn
    or repaid_to_date < prev_repaid
    or written_off_to_date < prev_written_off
