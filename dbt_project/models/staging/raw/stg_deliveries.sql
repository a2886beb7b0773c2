-- One row per loaded delivery partition (source, ds): every folder
-- home/raw/<source>/ds=<ds>/, also one whose delivery had no rows. Landing
-- renames a partition into place only once it is complete, so a folder that
-- exists is committed.
with files as (
    select {{ forward_slashes('file') }} as file
    from {{ source('raw', 'partitions') }}
)

select
    {{ regex_extract('file', '/raw/([^/]+)/ds=[0-9-]+/[^/]+$') }} as source,
    cast({{ regex_extract('file', '/ds=([0-9]{4}-[0-9]{2}-[0-9]{2})/[^/]+$') }} as date) as ds,
    count(*) as files
from files
where {{ regex_matches('file', '/raw/[^/]+/ds=[0-9]{4}-[0-9]{2}-[0-9]{2}/[^/]+$') }}
group by 1, 2
