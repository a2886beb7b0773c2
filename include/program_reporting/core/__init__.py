"""What every stage shares: settings and paths, the extract contract as data, reference
data (the dbt seeds), checksums, durable writes, failpoints and the redaction of personal
data. Imports nothing else of the package."""
