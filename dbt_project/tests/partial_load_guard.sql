-- A partial load shows as a sudden drop: the latest credit-event delivery
-- holding less than half the average of the seven deliveries before it, or
-- the latest date having fewer than half the segment rows of the date before.
-- A warning, not a failure: a quiet day is possible, and landing's
-- reconciliation already refuses incomplete deliveries; this catches what
-- slipped through upstream for the operator to look at.
{{ config(severity = 'warn') }}
with deliveries as (
    select deliveries.ds, coalesce(events.n, 0) as n
    from {{ ref('stg_deliveries') }} as deliveries
    left join (
        select _ds, count(*) as n from {{ ref('stg_credit_events') }}
        group by _ds
    ) as events
        on deliveries.ds = events._ds
    where deliveries.source = 'credit_events'
),

trailing_deliveries as (
    select
        ds,
        n,
        avg(n) over (order by ds rows between 7 preceding and 1 preceding) as avg_before,
        count(*) over (order by ds rows between 7 preceding and 1 preceding) as deliveries_before
    from deliveries
),

segment_rows as (
    select program_code, as_of_date, count(*) as n
    from {{ ref('kpi_segment_daily') }}
    group by program_code, as_of_date
),

segment_trend as (
    select
        program_code,
        as_of_date,
        n,
        lag(n) over (partition by program_code order by as_of_date) as n_before,
        max(as_of_date) over (partition by program_code) as latest
    from segment_rows
)

select 'credit_events delivery ' || cast(ds as {{ text_type() }}) as what, n, avg_before as expected
from trailing_deliveries
where ds = (select max(latest.ds) from trailing_deliveries as latest)
    and deliveries_before >= 7
    and n < 0.5 * avg_before

union all

select 'segment rows of ' || program_code || ' on ' || cast(as_of_date as {{ text_type() }}) as what, n, n_before
from segment_trend
where as_of_date = latest
    and n < 0.5 * n_before
