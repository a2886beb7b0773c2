WITH c AS (
  SELECT program_code, as_of_date, lag(as_of_date) OVER w AS compared_to, 'candidate' AS basis,
         lag(enrolled_merchants) OVER w AS prev_enrolled, enrolled_merchants AS cur_enrolled,
         lag(open_credit_lines) OVER w AS prev_open_lines, open_credit_lines AS cur_open_lines,
         lag(jobs_current) OVER w AS prev_jobs, jobs_current AS cur_jobs
  FROM kpi_program_daily WINDOW w AS (PARTITION BY program_code ORDER BY as_of_date)),
pub AS (SELECT program_code, max(as_of_date) AS d FROM previous_program_daily GROUP BY 1),
cand AS (SELECT program_code, max(as_of_date) AS d FROM kpi_program_daily GROUP BY 1),
x AS (
  SELECT cand.program_code, cand.d AS as_of_date, pub.d AS compared_to, 'previous published set' AS basis,
         pp.enrolled_merchants AS prev_enrolled, cc.enrolled_merchants AS cur_enrolled,
         pp.open_credit_lines AS prev_open_lines, cc.open_credit_lines AS cur_open_lines,
         pp.jobs_current AS prev_jobs, cc.jobs_current AS cur_jobs
  FROM cand JOIN pub USING (program_code)
  JOIN previous_program_daily pp ON pp.program_code = pub.program_code AND pp.as_of_date = pub.d
  JOIN kpi_program_daily cc ON cc.program_code = cand.program_code AND cc.as_of_date = cand.d),
u AS (SELECT * FROM c UNION ALL SELECT * FROM x)
SELECT *,
  CASE WHEN prev_enrolled > 0 THEN (prev_enrolled - cur_enrolled) / prev_enrolled ELSE 0 END AS enrolled_drop_share,
  CASE WHEN prev_open_lines > 0 THEN (prev_open_lines - cur_open_lines) / prev_open_lines ELSE 0 END AS open_lines_drop_share,
  CASE WHEN prev_jobs > 0 THEN (prev_jobs - cur_jobs) / prev_jobs ELSE 0 END AS jobs_drop_share
FROM u ORDER BY program_code, as_of_date, basis
