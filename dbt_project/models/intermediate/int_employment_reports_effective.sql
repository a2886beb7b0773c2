-- The effective employment report of each merchant per period of dates
-- (kpis.md "Effective employment report at d"): on date d, the reports for
-- the latest period_month <= the month of d that has any report, whenever
-- they were received; of those the one with the latest reported_at, then the
-- greatest report_id. reported_at only orders corrections.
-- valid_from..valid_to: from that month's first day to the day before the
-- next reported month (open-ended for the latest).
--
-- Incremental: a night recomputes the merchants of int_employment_report_restates
-- (their reports changed) from all their reports, and every other merchant
-- keeps its rows; when staging re-read every partition, every merchant.
{{
  config(
    materialized = 'incremental' if deletes_rows() else 'table',
    incremental_strategy = 'append',
    on_schema_change = 'fail',
    pre_hook = [
      "{% if is_incremental() %}delete from {{ this }}{% if restate_reports_by_merchant() %}
         where merchant_id in (select merchant_id from {{ ref('int_employment_report_restates') }}){% endif %}{% endif %}"
    ]
  )
}}
-- depends_on: {{ ref('int_employment_report_restates') }}
with ranked as (
    select
        *,
        row_number() over (
            partition by merchant_id, period_month
            order by reported_at desc, report_id desc
        ) as correction_rank
    from {{ ref('stg_employment_reports') }}
    {% if is_incremental() and restate_reports_by_merchant() %}
    where merchant_id in (select restates.merchant_id from {{ ref('int_employment_report_restates') }} as restates)
    {% endif %}
),

winners as (
    select * from ranked
    where correction_rank = 1
)

select
    merchant_id,
    period_month,
    report_id,
    reported_at,
    employees,
    baseline_employees,
    case when employees < baseline_employees then employees else baseline_employees end as jobs_retained,
    case when employees > baseline_employees then employees - baseline_employees else 0 end as jobs_added,
    verification_status,
    period_month as valid_from,
    coalesce(
        {{ add_days(-1, 'lead(period_month) over (partition by merchant_id order by period_month)') }},
        {{ end_of_time() }}
    ) as valid_to
from winners
