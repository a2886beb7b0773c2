WITH p AS (
  SELECT program_code, min(as_of_date) AS first_date, max(as_of_date) AS last_date,
         count(DISTINCT as_of_date) AS dates
  FROM kpi_program_daily
  GROUP BY program_code)
SELECT program_code, first_date, last_date, dates,
       date_diff('day', first_date, last_date) + 1 - dates AS missing_dates,
       last_date >= CAST(getvariable('ds') AS DATE) AS reaches_ds,
       last_date = (SELECT max(as_of_date) FROM kpi_program_daily) AS ends_on_latest_date
FROM p
ORDER BY program_code
