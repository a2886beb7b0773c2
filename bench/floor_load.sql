-- The SQL floor's loading: the landed raw layer (docs/architecture.md) read
-- into DuckDB tables as it is, the columns kpi_program_daily needs and
-- nothing computed. Timed apart from the computing
-- (floor_kpi_program_daily.sql), which reads only these tables.
--
-- Placeholder filled in by bench/floor.py: {raw}.

SET preserve_insertion_order = false;

CREATE OR REPLACE TEMP TABLE raw_merchants AS
SELECT merchant_id, program_code, region, business_type, size_class, enrolled_on, status, updated_at, _ds, _line
FROM read_parquet('{raw}/merchants/ds=*/*.parquet', union_by_name = true, hive_partitioning = false);

CREATE OR REPLACE TEMP TABLE raw_credit_events AS
SELECT event_id, credit_line_id, merchant_id, event_type, event_at, amount, annual_interest_rate, due_on, _ds, _line
FROM read_parquet('{raw}/credit_events/ds=*/*.parquet', union_by_name = true, hive_partitioning = false);

CREATE OR REPLACE TEMP TABLE raw_employment_reports AS
SELECT report_id, merchant_id, period_month, employees, baseline_employees, reported_at, _ds, _line
FROM read_parquet('{raw}/employment_reports/ds=*/*.parquet', union_by_name = true, hive_partitioning = false);

-- every file of every partition: a partition whose delivery had no rows is loaded too
CREATE OR REPLACE TEMP TABLE raw_partitions AS
SELECT replace(file, '\', '/') AS file FROM glob('{raw}/*/ds=*/*');
