{#- The night's restatement plan, one row: which dates, partitions and lines
    the incremental models recompute (doc restatement_plan). The models read it
    when they run (macro build_plan), after it: each one that restates, and
    stg_merchants, whose previous contents the plan reads, waits for it. It
    reads sources only (and, without ref, what the last build left), so that it
    runs first and those models start right after it. -#}
{%- set full = build_is_full_refresh() %}
{%- set budget = line_pass_events() %}
-- the branches are chosen when the model runs: every branch's inputs
-- depends_on: {{ source('raw', 'merchants') }}
with deliveries as (
    {{ deliveries_since_last_build() }}
),

-- the last successful build (none: everything is new)
previous as (
    select
        1 as found,
        builds.loaded_through
    from {{ source('build_log', '_build_log') }} as builds
    where builds.succeeded
    order by builds.finished_at desc
    limit 1
),

changed as (
    select *
    from deliveries
    where is_changed
),

-- the merchants re-segmented: a date, or none
merchants as (
    {%- if full %}
    select cast(null as date) as touches_from
    {%- else %}
    {{ merchant_touches("(select changed.ds from changed where changed.source = 'merchants')") }}
    {%- endif %}
),

facts as (
    select
        max(case when not d.is_gone then d.ds end) as loaded_through,
        -- no records at all (a hand-run dbt build: the build writes them for its own dbt run)
        count(case when not d.is_gone then 1 end) = 0 as no_records,
        count(case when not d.is_gone then 1 end) as partitions,
        count(case when d.is_changed then 1 end) as changed_partitions,
        coalesce(sum(
            case
                when d.source = 'credit_events' and not d.is_gone
                    then coalesce(nullif(d.loaded, 0), nullif(d.delivered, 0), 0)
            end
        ), 0) as credit_events,
        -- a partition seen before is gone, or was delivered again: its old rows may be gone
        coalesce(max(
            case
                when d.source = 'credit_events' and (d.is_gone or (d.is_changed and d.delivered_again)) then 1
            end
        ), 0) = 1 as credit_rows_may_be_gone,
        -- a report's older copy, replaced in the table since, may win again
        coalesce(max(
            case
                when d.source = 'employment_reports' and (d.is_gone or (d.is_changed and d.delivered_again)) then 1
            end
        ), 0) = 1 as reports_replaced,
        coalesce(min(
            case
                when d.source = 'credit_events' and d.is_changed and not d.new_landings_are_instants then 0
            end
        ), 1) = 1 as landings_are_instants,
        min(case when d.source = 'credit_events' and d.is_changed then d.earliest_new_landing_at end)
            as earliest_new_landing_at
    from deliveries as d
),

-- the earliest landing the last build has not seen, as recorded
earliest_landing as (
    select min(changed.earliest_new_landing) as new_rows_since
    from changed
    inner join facts
        on changed.earliest_new_landing_at = facts.earliest_new_landing_at
    where changed.source = 'credit_events'
),

-- the earliest date anything new can change: the new dates at the end of the
-- spine (overdue thresholds and rate changes dated there), the reach of the
-- changed credit partitions, and the merchants re-segmented
restate_candidates as (
    select {{ add_days(1, 'previous.loaded_through') }} as from_date
    from previous
    where previous.loaded_through is not null

    union all

    select changed.touches_from
    from changed
    where changed.source = 'credit_events' and changed.touches_from is not null

    union all

    select merchants.touches_from
    from merchants
    where merchants.touches_from is not null
),

restate as (
    select min(candidates.from_date) as restate_from
    from restate_candidates as candidates
),

-- staging re-reads a source's partitions from the earliest whose rows changed
-- (or that is gone), or the first new ds, and no older one; a partition given
-- only new releases is not re-read for them (appends, below)
reread_candidates as (
    select
        deliveries.source,
        deliveries.ds
    from deliveries
    where
        ((deliveries.is_changed and deliveries.rows_changed) or deliveries.is_gone)
        and not deliveries.only_new_releases

    union all

    select
        sources.source,
        {{ add_days(1, 'previous.loaded_through') }}
    from previous
    cross join (
        select 'credit_events' as source
        union all
        select 'employment_reports' as source
    ) as sources
    where previous.loaded_through is not null
),

reread as (
    select
        min(case when candidates.source = 'credit_events' then candidates.ds end) as reload_from,
        min(case when candidates.source = 'employment_reports' then candidates.ds end) as reports_reload_from
    from reread_candidates as candidates
),

-- the partitions before those re-read whose only change is new releases of
-- rows: staging appends their rows landed at or after the earliest of those
-- releases (the release stamps its rows' _landed_at with its instant)
appends as (
    select
        min(case when d.source = 'credit_events' and d.ds < reread.reload_from then d.ds end) as append_from,
        min(case when d.source = 'credit_events' and d.ds < reread.reload_from then d.earliest_new_landing_at end)
            as append_since,
        min(case when d.source = 'employment_reports' and d.ds < reread.reports_reload_from then d.ds end)
            as reports_append_from,
        min(
            case
                when d.source = 'employment_reports' and d.ds < reread.reports_reload_from
                    then d.earliest_new_landing_at
            end
        ) as reports_append_since
    from deliveries as d
    cross join reread
    where d.only_new_releases
),

-- a benchmark rate changes in the new dates: every line changes
rate_changes as (
    select count(rates.effective_from) > 0 as in_new_dates
    from (
        {%- if full %}
        select cast(null as date) as effective_from
        where 1 = 0
        {%- else %}
        {{ benchmark_rate_dates() }}
        {%- endif %}
    ) as rates
    cross join previous
    cross join facts
    where
        rates.effective_from > previous.loaded_through
        and rates.effective_from <= coalesce(facts.loaded_through, previous.loaded_through)
),

this_build as (
    select
        facts.*,
        restate.restate_from,
        reread.reload_from,
        reread.reports_reload_from,
        appends.append_from,
        appends.append_since,
        appends.reports_append_from,
        appends.reports_append_since,
        previous.loaded_through as loaded_through_before,
        {{ 'true' if full else 'false' }} or previous.found is null or facts.no_records as rebuilds_everything,
        -- line by line only when exact: rows landed since the last build are all that is new
        case
            when previous.loaded_through is null then null
            when facts.credit_rows_may_be_gone or rate_changes.in_new_dates then null
            when not facts.landings_are_instants then null
            when facts.earliest_new_landing_at is null then {{ nothing_new() }}
            else earliest_landing.new_rows_since
        end as new_rows_since
    from facts
    cross join restate
    cross join reread
    cross join appends
    cross join rate_changes
    cross join earliest_landing
    left join previous on 1 = 1
)

select
    rebuilds_everything as full_refresh,
    case when rebuilds_everything then {{ start_of_time() }}
        else coalesce(restate_from, {{ start_of_time() }})
    end as restate_from,
    case when rebuilds_everything then {{ start_of_time() }}
        else coalesce(reload_from, {{ start_of_time() }})
    end as reload_from,
    case when rebuilds_everything or reports_replaced then {{ start_of_time() }}
        else coalesce(reports_reload_from, {{ start_of_time() }})
    end as reports_reload_from,
    case when not rebuilds_everything then append_from end as append_from,
    case when not rebuilds_everything then append_since end as append_since,
    case when not rebuilds_everything and not reports_replaced then reports_append_from end as reports_append_from,
    case when not rebuilds_everything and not reports_replaced then reports_append_since end as reports_append_since,
    case when not rebuilds_everything then new_rows_since end as new_rows_since,
    case when not rebuilds_everything and new_rows_since is not null then loaded_through_before end
        as loaded_through_before,
    case when rebuilds_everything then {{ line_passes_for('credit_events', budget) }} end as line_passes,
    case when rebuilds_everything then partitions else changed_partitions end as changed_deliveries,
    loaded_through
from this_build
