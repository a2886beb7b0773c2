{#- A SELECT of one row: the earliest business date the merchants partitions
    changed since the last build can move credit figures between segments
    (NULL: none). `changed`: a relation or CTE of the changed merchants
    partitions (column ds).

    A version written on day u re-segments the merchant's lines from u (UTC
    date minus a day: a margin for every time zone); a partition that holds,
    or held at the last build, a merchant's earliest version re-segments its
    lines' whole history (kpis.md: before a merchant is known its earliest
    version decides), from its first event. Employment and merchant figures
    themselves are rebuilt whole each night and need no date.

    "Held": the rows the last build staged (stg_merchants as it left it, read
    before this build restages them: stg_merchants waits for the plan). Only
    merchants with a row in a changed partition, now or then, can be touched:
    the rest of the register is read for those merchants alone. Without what
    the last build staged there is nothing to compare with: every date. -#}
{% macro merchant_touches(changed) -%}
{%- set staged_merchants = previous_relation('stg_merchants') -%}
{%- set staged_events = previous_relation('stg_credit_events') -%}
{%- if staged_merchants is none or staged_events is none -%}
select {{ start_of_time() }} as touches_from
{%- else -%}
with now_raw as (
    select
        cast(raw_merchants.merchant_id as {{ text_type() }}) as merchant_id,
        cast(raw_merchants.updated_at as {{ instant_type() }}) as updated_at,
        cast(raw_merchants._ds as date) as _ds
    from {{ source('raw', 'merchants') }} as raw_merchants
),

staged as (
    select
        staged_merchants.merchant_id,
        staged_merchants.updated_at,
        staged_merchants._ds
    from {{ staged_merchants }} as staged_merchants
),

touched as (
    select
        now_raw.merchant_id,
        now_raw.updated_at
    from now_raw
    where now_raw._ds in (select changed_partitions.ds from {{ changed }} as changed_partitions)

    union all

    select
        staged.merchant_id,
        staged.updated_at
    from staged
    where staged._ds in (select changed_partitions.ds from {{ changed }} as changed_partitions)
),

candidates as (
    select distinct touched.merchant_id
    from touched
),

first_now as (
    select
        now_raw.merchant_id,
        min(now_raw.updated_at) as first_at
    from now_raw
    where now_raw.merchant_id in (select candidates.merchant_id from candidates)
    group by now_raw.merchant_id
),

first_staged as (
    select
        staged.merchant_id,
        min(staged.updated_at) as first_at
    from staged
    where staged.merchant_id in (select candidates.merchant_id from candidates)
    group by staged.merchant_id
),

-- merchants whose earliest version is (or was) in a changed partition
rewritten as (
    select now_raw.merchant_id
    from now_raw
    inner join first_now
        on
            now_raw.merchant_id = first_now.merchant_id
            and now_raw.updated_at = first_now.first_at
    where now_raw._ds in (select changed_partitions.ds from {{ changed }} as changed_partitions)

    union

    select staged.merchant_id
    from staged
    inner join first_staged
        on
            staged.merchant_id = first_staged.merchant_id
            and staged.updated_at = first_staged.first_at
    where staged._ds in (select changed_partitions.ds from {{ changed }} as changed_partitions)
)

select
    least(
        (select {{ add_days(-1, 'min(' ~ utc_date('touched.updated_at') ~ ')') }} from touched),
        -- the staged events, not the view int_credit_events (its joins cost 10 s at
        -- 1M merchants); UTC date - 1 is on or before the local date
        (
            select {{ add_days(-1, 'min(' ~ utc_date('events.event_at') ~ ')') }}
            from {{ staged_events }} as events
            where events.merchant_id in (select rewritten.merchant_id from rewritten)
        )
    ) as touches_from
{%- endif -%}
{%- endmacro %}
