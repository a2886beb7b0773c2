-- Rates are fractions: shares of a whole lie in [0, 1]. utilization_rate may
-- exceed 1 (a closed line keeps its balance but not its limit), never go
-- below 0. default_rate is in [0, 1] unless more is written off than drawn
-- (a data problem, flagged by the in_range warning on the column).
-- Fails the build.
{{ config(severity = 'error') }}
select program_code, as_of_date
from {{ ref('kpi_program_daily') }}
where par30_rate not between 0 and 1
    or par90_rate not between 0 and 1
    or par90_rate > par30_rate
    or reporting_coverage not between 0 and 1
    or jobs_retention_rate not between 0 and 1
    or survival_rate_90d not between 0 and 1
    or utilization_rate < 0
    or active_merchants + exited_merchants > enrolled_merchants
    or merchants_with_credit > open_credit_lines
    or par30_balance > outstanding_balance
