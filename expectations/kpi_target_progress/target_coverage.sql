SELECT p.program_code, p.as_of_date,
       (SELECT count(*) FROM program_targets t WHERE t.program_code = p.program_code) AS targets_expected,
       (SELECT count(*) FROM kpi_target_progress g WHERE g.program_code = p.program_code AND g.as_of_date = p.as_of_date
          AND g.metric IN (SELECT metric FROM program_targets t WHERE t.program_code = p.program_code)) AS target_rows
FROM kpi_program_daily p ORDER BY 1, 2
