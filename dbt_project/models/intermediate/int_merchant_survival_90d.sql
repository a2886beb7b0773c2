-- kpis.md survival_rate_90d: for each enrolment date a merchant has had, its
-- status at enrolled_on + 90 days - the version in force at that date, or the
-- earliest version if the merchant was not yet known then - and whether that
-- status is not `exited` (the merchant survived 90 days).
with enrolments as (
    select distinct merchant_id, enrolled_on
    from {{ ref('int_merchant_versions') }}
)

select
    enrolments.merchant_id,
    enrolments.enrolled_on,
    {{ add_days(90, 'enrolments.enrolled_on') }} as day_90,
    at_day_90.status as status_at_day_90,
    at_day_90.status <> 'exited' as is_survivor
from enrolments
inner join {{ ref('int_merchant_versions') }} as at_day_90
    on enrolments.merchant_id = at_day_90.merchant_id
        and {{ add_days(90, 'enrolments.enrolled_on') }} between at_day_90.attributed_from and at_day_90.valid_to
