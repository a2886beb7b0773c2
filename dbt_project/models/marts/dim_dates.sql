-- The semantic layer's time spine (models/semantic/, MetricFlow): one row per
-- date of the reporting calendar, the first enrolment of any program to the
-- latest ds loaded. MetricFlow joins a cumulative metric to it, one row per
-- spine date: a spine of fixed far-off bounds would give cumulative figures
-- for dates nothing has been reported on yet.
select distinct cast(as_of_date as date) as date_day
from {{ ref('int_program_calendar') }}
