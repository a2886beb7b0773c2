-- Identities between the published figures that kpis.md does not state, so
-- the warehouse checks them and the gate does not: PAR90 within PAR30, the
-- merchants' states within enrolment, lines with credit within open lines,
-- the PAR30 balance within the outstanding balance. The rates' own bounds are
-- the publication gate's (GX, docs/validation.md "Which check lives where").
-- Fails the build.
{{ config(severity = 'error') }}
select program_code, as_of_date
from {{ ref('kpi_program_daily') }}
where par90_rate > par30_rate
    or active_merchants + exited_merchants > enrolled_merchants
    or merchants_with_credit > open_credit_lines
    or par30_balance > outstanding_balance
