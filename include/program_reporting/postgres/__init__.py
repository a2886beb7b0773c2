"""The production backend on PostgreSQL: connections and table copies, the raw layer for
dbt's postgres target, the marts gate there, the serving schema BI tools read, and
`init-warehouse`."""
