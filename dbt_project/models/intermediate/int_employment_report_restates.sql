-- The merchants whose effective employment reports a nightly build recomputes
-- (int_employment_reports_effective): those with a report among the rows
-- staging re-read or appended (macro reread_rows), and those whose effective report
-- was re-read under another merchant (a re-sent copy replaced it). Every other
-- merchant keeps its rows: its reports are as the last build saw them. Empty
-- when staging re-read every partition (a re-delivery, a full refresh, no
-- plan); int_employment_reports_effective is then rebuilt whole.
{% if restate_reports_by_merchant() %}
{%- set effective = adapter.get_relation(database=this.database, schema=this.schema,
                                         identifier='int_employment_reports_effective') %}
with reread as (
    select report_id, merchant_id
    from {{ ref('stg_employment_reports') }}
    where {{ reread_rows('employment_reports') }}
)

select merchant_id from reread
{% if effective is not none %}
union
select effective.merchant_id
from {{ effective }} as effective
where effective.report_id in (select reread.report_id from reread)
{% endif %}
{% else %}
-- the plan is read when the model runs, not when dbt parses it: both branches' refs
-- depends_on: {{ ref('stg_employment_reports') }}
select cast(null as {{ text_type() }}) as merchant_id
where false
{% endif %}
