SELECT DISTINCT s.program_code, s.as_of_date, p.program_code IS NOT NULL AS in_program_daily
FROM kpi_segment_daily s
LEFT JOIN kpi_program_daily p USING (program_code, as_of_date)
ORDER BY 1, 2
