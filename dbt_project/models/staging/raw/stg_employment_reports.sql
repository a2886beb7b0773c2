{{
  config(
    materialized = 'incremental' if deletes_rows() else 'table',
    incremental_strategy = 'append',
    on_schema_change = 'fail',
    pre_hook = [
      "{% if is_incremental() %}{% set reread = reports_reload_from() %}delete from {{ this }}
         where _ds >= {{ reread }} or report_id in (
           select cast(report_id as {{ text_type() }}) from {{ source('raw', 'employment_reports') }}
           where _ds >= {{ reread }}){% endif %}",
      "{% if is_incremental() and appended_rows('employment_reports') %}delete from {{ this }} as kept using (
           select cast(report_id as {{ text_type() }}) as report_id, cast(_ds as date) as _ds, _line
           from {{ source('raw', 'employment_reports') }} where {{ appended_rows('employment_reports') }}) as appended
         where appended.report_id = kept.report_id
           and (appended._ds > kept._ds or (appended._ds = kept._ds and appended._line >= kept._line)){% endif %}"
    ]
  )
}}
-- One row per report_id. A report delivered again (identical, or re-sent in a
-- later delivery) counts once: the copy from the latest delivery wins.
-- Which report of a (merchant, month) is in force is decided later, in
-- int_employment_reports_effective.
--
-- Incremental: replaces whole delivery partitions, from the earliest one with
-- new rows since the last build (reports_reload_from; every partition after a
-- re-delivery), and no older one. A re-read copy is from a later delivery than
-- any stored copy of an older partition, so it wins: the pre_hook deletes the
-- re-read partitions and the stored copies they replace. Orphans released
-- into an older partition (its only change) are appended, not re-read (macro
-- reread_rows): an appended copy replaces a stored copy from an earlier
-- (delivery, line) (the second pre_hook: a join, as in stg_credit_events), and
-- not one from a later one, which stays (the NOT EXISTS below).
-- The partitions re-read come from the night's plan (int_build_plan): the plan first.
-- depends_on: {{ ref('int_build_plan') }}

with source as (
    {% if is_incremental() %}
    {{ reread_rows_of('employment_reports', source('raw', 'employment_reports')) }}
    {% else %}
    select * from {{ source('raw', 'employment_reports') }}
    {% endif %}
),

typed as (
    select
        cast(report_id as {{ text_type() }}) as report_id,
        cast(merchant_id as {{ text_type() }}) as merchant_id,
        cast(period_month as date) as period_month,
        cast(employees as bigint) as employees,
        cast(baseline_employees as bigint) as baseline_employees,
        cast(reported_at as {{ instant_type() }}) as reported_at,
        cast(verification_status as {{ text_type() }}) as verification_status,
        cast(_ds as date) as _ds,
        cast(_file as {{ text_type() }}) as _file,
        cast(_line as bigint) as _line,
        cast(_landed_at as {{ instant_type() }}) as _landed_at
    from source
),

ranked as (
    select
        *,
        row_number() over (partition by report_id order by _ds desc, _line desc) as copy_rank
    from typed
),

latest as (
    select * from ranked
    where copy_rank = 1
)

select
    report_id,
    merchant_id,
    period_month,
    employees,
    baseline_employees,
    reported_at,
    verification_status,
    _ds,
    _file,
    _line,
    _landed_at
from latest
{% if is_incremental() %}
-- a stored copy left by the pre_hooks is from a later (delivery, line) than this one
where
    not exists (
        select 1 from {{ this }} as kept
        where kept.report_id = latest.report_id
    )
{% endif %}
