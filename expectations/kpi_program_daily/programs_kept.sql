SELECT program_code,
       program_code IN (SELECT program_code FROM kpi_program_daily) AS still_reported
FROM (SELECT DISTINCT program_code FROM previous_program_daily)
ORDER BY 1
