-- Every delivery partition, what the last successful build saw of it and what
-- a change since can touch (macro deliveries_since_last_build). The build
-- records the versions of this table as what it saw (_build_deliveries) once
-- it succeeds.
{{ deliveries_since_last_build() }}
