SELECT program_code, as_of_date,
       drawn_to_date - coalesce(lag(drawn_to_date) OVER w, 0) AS drawn_to_date_step,
       repaid_to_date - coalesce(lag(repaid_to_date) OVER w, 0) AS repaid_to_date_step,
       written_off_to_date - coalesce(lag(written_off_to_date) OVER w, 0) AS written_off_to_date_step,
       interest_subsidy_cost_to_date - coalesce(lag(interest_subsidy_cost_to_date) OVER w, 0)
         AS interest_subsidy_cost_to_date_step
FROM kpi_program_daily
WINDOW w AS (PARTITION BY program_code ORDER BY as_of_date)
ORDER BY 1, 2
