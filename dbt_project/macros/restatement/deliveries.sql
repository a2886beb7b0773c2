{#- Every delivery partition, what the last successful build saw of it, and
    what a change since can touch. The SQL of int_build_deliveries; the plan
    (int_build_plan) runs the same rules on the same records.

    A partition's version is `landed_at|number of releases|the latest
    release's at`: it changes whenever landing replaces the partition or
    releases held orphans into it. When the last build saw this very landing
    (same landed_at) and only releases were added since, only those releases
    are new (new_releases_known): an old partition that receives a few
    released orphans does not restate the reach of its whole original
    delivery, and staging appends the released rows instead of reading the
    partition again (only_new_releases). Otherwise (a new partition, one
    delivered again, one without a readable record) the whole partition is
    new. -#}
{% macro deliveries_since_last_build() -%}
with landings as (
    select
        landed.source,
        cast(landed.ds as date) as ds,
        landed.record,
        landed.files
    from {{ source('build_log', '_build_landings') }} as landed
    where
        landed.source in ('merchants', 'credit_events', 'employment_reports')
        and {{ regex_matches('landed.ds', '^[0-9]{4}-[0-9]{2}-[0-9]{2}$') }}
),

-- the facts of each record
records as (
    select
        landings.source,
        landings.ds,
        landings.record is not null as has_record,
        landings.files,
        {{ json_text('landings.record', 'landed_at') }} as landed_at,
        {{ json_text('landings.record', 'touches_from') }} as touches_from,
        cast({{ json_text('landings.record', 'loaded') }} as bigint) as loaded,
        cast({{ json_text('landings.record', 'delivered') }} as bigint) as delivered
    from landings
),

-- its releases of held orphans, in order: when, how many rows (0: the held
-- orphans expired into quarantine), the earliest date the released rows can
-- change (releases recorded before they carried one have none)
releases as (
    select
        landings.source,
        landings.ds,
        cast(released.position as integer) as release_number,
        {{ json_text('released.element', 'at') }} as released_at,
        {{ json_has_key('released.element', 'touches_from') }} as has_touches_from,
        {{ json_text('released.element', 'touches_from') }} as touches_from,
        cast({{ json_text('released.element', 'released') }} as bigint) as released
    from landings
    {{ json_array_rows('landings.record', 'releases', 'released') }}
),

seen as (
    select
        builds.source,
        cast(builds.ds as date) as ds,
        builds.version
    from {{ source('build_log', '_build_deliveries') }} as builds
),

latest_release as (
    select
        source,
        ds,
        count(*) as release_count,
        max(case when release_number = last_number then coalesce(released_at, 'None') end) as latest_at
    from (
        select *, max(release_number) over (partition by source, ds) as last_number
        from releases
    ) as numbered
    group by source, ds
),

versions as (
    select
        records.*,
        -- a partition without a record: its files stand in for its landing
        case when records.has_record then coalesce(records.landed_at, 'None') else records.files end as landing,
        coalesce(latest_release.release_count, 0) as release_count,
        coalesce(latest_release.latest_at, '') as latest_release_at
    from records
    left join latest_release
        on records.source = latest_release.source
        and records.ds = latest_release.ds
),

compared as (
    select
        coalesce(versions.source, seen.source) as source,
        coalesce(versions.ds, seen.ds) as ds,
        versions.source is null as is_gone,
        versions.has_record,
        versions.landed_at,
        versions.touches_from,
        versions.loaded,
        versions.delivered,
        versions.landing || '|' || cast(versions.release_count as {{ text_type() }}) || '|' || versions.latest_release_at
            as version,
        seen.version as seen_version,
        -- the releases the last build saw, when it saw this very landing
        case
            when {{ regex_matches('seen.version', '^.*[|][0-9]+[|][^|]*$') }}
                and {{ regex_extract('seen.version', '^(.*)[|][0-9]+[|][^|]*$') }} = versions.landing
                then cast({{ regex_extract('seen.version', '[|]([0-9]+)[|][^|]*$') }} as integer)
        end as seen_release_count
    from versions
    full outer join seen
        on versions.source = seen.source
        and versions.ds = seen.ds
),

new_releases as (
    select
        compared.source,
        compared.ds,
        releases.released_at,
        releases.has_touches_from,
        nullif(releases.touches_from, '') as touches_from,
        -- a release of no row (held orphans expired into quarantine) changes no row
        coalesce(releases.released <> 0, true) as released_rows,
        {{ is_iso_instant('releases.released_at') }} as at_is_instant
    from compared
    inner join releases
        on compared.source = releases.source
        and compared.ds = releases.ds
        and releases.release_number > compared.seen_release_count
),

-- the rows landed since the last build: a new partition's, or its new releases'
new_landings as (
    select
        source,
        ds,
        landed_at,
        case when {{ is_iso_instant('landed_at') }} then cast(landed_at as {{ instant_type() }}) end as landed_instant
    from compared
    where seen_version is null and not is_gone

    union all

    select
        source,
        ds,
        released_at,
        case when at_is_instant then cast(released_at as {{ instant_type() }}) end
    from new_releases
),

new_landing_facts as (
    select
        source,
        ds,
        min(case when landed_instant is null then 0 else 1 end) = 1 as new_landings_are_instants,
        min(earliest_instant) as earliest_new_landing_at,
        min(case when landed_instant = earliest_instant then landed_at end) as earliest_new_landing
    from (
        select *, min(landed_instant) over (partition by source, ds) as earliest_instant
        from new_landings
    ) as landings
    group by source, ds
),

new_release_facts as (
    select
        source,
        ds,
        min(case when has_touches_from then 1 else 0 end) = 1 as all_carry_touches_from,
        min(touches_from) as earliest_touches_from,
        max(case when released_rows then 1 else 0 end) = 1 as any_released_rows
    from new_releases
    group by source, ds
)

select
    compared.source,
    compared.ds,
    compared.version,
    compared.seen_version,
    compared.is_gone,
    not compared.is_gone and compared.seen_version is distinct from compared.version as is_changed,
    compared.seen_release_count is not null as new_releases_known,
    -- seen before, but not this landing: delivered again (its old rows may be gone)
    not compared.is_gone and compared.seen_version is not null and compared.seen_release_count is null
        as delivered_again,
    -- whether its rows can differ from what the last build read: not when only
    -- releases of no row were added since
    compared.seen_release_count is null or coalesce(new_release_facts.any_released_rows, false) as rows_changed,
    -- what is new is only rows released into it, each release at an instant:
    -- those rows (landed at or after the earliest of them) can be appended
    -- without reading the partition again
    not compared.is_gone
    and compared.seen_version is distinct from compared.version
    and compared.seen_release_count is not null
    and coalesce(new_release_facts.any_released_rows, false)
    and coalesce(new_landing_facts.new_landings_are_instants, false)
    and new_landing_facts.earliest_new_landing_at is not null as only_new_releases,
    -- the earliest business date a change of this (credit) partition can move:
    -- only its new releases' reach when those are all that is new (none: no
    -- date); else the partition's touches_from; a record without one although
    -- rows landed (or no record) cannot be trusted: every date
    case
        when compared.seen_release_count is not null and coalesce(new_release_facts.all_carry_touches_from, true)
            then cast(new_release_facts.earliest_touches_from as date)
        when nullif(compared.touches_from, '') is not null then cast(compared.touches_from as date)
        when compared.loaded is null or compared.loaded <> 0 or coalesce(compared.delivered, 0) <> 0
            then {{ start_of_time() }}
    end as touches_from,
    -- the landing times of the rows landed since the last build (a new partition's,
    -- its new releases'): whether all are instants, and the earliest as written
    coalesce(new_landing_facts.new_landings_are_instants, true) as new_landings_are_instants,
    new_landing_facts.earliest_new_landing_at,
    new_landing_facts.earliest_new_landing,
    compared.landed_at,
    compared.loaded,
    compared.delivered
from compared
left join new_release_facts
    on compared.source = new_release_facts.source
    and compared.ds = new_release_facts.ds
left join new_landing_facts
    on compared.source = new_landing_facts.source
    and compared.ds = new_landing_facts.ds
{%- endmacro %}
