-- One row per landed delivery (source, ds), from its reconciliation record.
select
    cast(source as varchar) as source,
    cast(ds as date) as ds,
    cast(delivered as bigint) as delivered,
    cast(loaded as bigint) as loaded,
    cast(quarantined as bigint) as quarantined,
    cast(held as bigint) as held,
    cast(landed_at as timestamptz) as landed_at,
    cast(touches_from as date) as touches_from
from {{ source('raw', 'deliveries') }}
