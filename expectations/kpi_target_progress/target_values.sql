WITH pd AS (
  SELECT program_code, as_of_date,
         unnest([
           'enrolled_merchants',
           'active_merchants',
           'exited_merchants',
           'open_credit_lines',
           'merchants_with_credit',
           'credit_limit_total',
           'avg_limit_per_merchant',
           'drawn_to_date',
           'goods_purchased_on_day',
           'repaid_to_date',
           'written_off_to_date',
           'outstanding_balance',
           'utilization_rate',
           'par30_balance',
           'par30_rate',
           'par90_rate',
           'default_rate',
           'interest_subsidy_cost_to_date',
           'reporting_merchants',
           'reporting_coverage',
           'jobs_baseline',
           'jobs_current',
           'jobs_retained',
           'jobs_added',
           'jobs_retention_rate',
           'survival_cohort_90d',
           'survival_rate_90d'
         ]) AS metric,
         unnest([
           CAST(kpi_program_daily.enrolled_merchants AS DECIMAL(38,6)),
           CAST(kpi_program_daily.active_merchants AS DECIMAL(38,6)),
           CAST(kpi_program_daily.exited_merchants AS DECIMAL(38,6)),
           CAST(kpi_program_daily.open_credit_lines AS DECIMAL(38,6)),
           CAST(kpi_program_daily.merchants_with_credit AS DECIMAL(38,6)),
           CAST(kpi_program_daily.credit_limit_total AS DECIMAL(38,6)),
           CAST(kpi_program_daily.avg_limit_per_merchant AS DECIMAL(38,6)),
           CAST(kpi_program_daily.drawn_to_date AS DECIMAL(38,6)),
           CAST(kpi_program_daily.goods_purchased_on_day AS DECIMAL(38,6)),
           CAST(kpi_program_daily.repaid_to_date AS DECIMAL(38,6)),
           CAST(kpi_program_daily.written_off_to_date AS DECIMAL(38,6)),
           CAST(kpi_program_daily.outstanding_balance AS DECIMAL(38,6)),
           CAST(kpi_program_daily.utilization_rate AS DECIMAL(38,6)),
           CAST(kpi_program_daily.par30_balance AS DECIMAL(38,6)),
           CAST(kpi_program_daily.par30_rate AS DECIMAL(38,6)),
           CAST(kpi_program_daily.par90_rate AS DECIMAL(38,6)),
           CAST(kpi_program_daily.default_rate AS DECIMAL(38,6)),
           CAST(kpi_program_daily.interest_subsidy_cost_to_date AS DECIMAL(38,6)),
           CAST(kpi_program_daily.reporting_merchants AS DECIMAL(38,6)),
           CAST(kpi_program_daily.reporting_coverage AS DECIMAL(38,6)),
           CAST(kpi_program_daily.jobs_baseline AS DECIMAL(38,6)),
           CAST(kpi_program_daily.jobs_current AS DECIMAL(38,6)),
           CAST(kpi_program_daily.jobs_retained AS DECIMAL(38,6)),
           CAST(kpi_program_daily.jobs_added AS DECIMAL(38,6)),
           CAST(kpi_program_daily.jobs_retention_rate AS DECIMAL(38,6)),
           CAST(kpi_program_daily.survival_cohort_90d AS DECIMAL(38,6)),
           CAST(kpi_program_daily.survival_rate_90d AS DECIMAL(38,6))
         ]) AS value
  FROM kpi_program_daily)
SELECT g.program_code, g.as_of_date, g.metric, g.target_value, g.actual_value, g.progress_rate,
       EXISTS (SELECT 1 FROM kpi_program_daily p
               WHERE p.program_code = g.program_code AND p.as_of_date = g.as_of_date) AS in_program_daily,
       g.actual_value IS NOT DISTINCT FROM round(pd.value, 2) AS actual_matches,
       g.target_value = t.target_value AS target_matches,
       CASE WHEN g.target_value = 0 OR g.actual_value IS NULL THEN g.progress_rate IS NULL
            ELSE abs(g.progress_rate - g.actual_value / g.target_value) <= 0.000001 END AS progress_matches
FROM kpi_target_progress g
LEFT JOIN pd ON pd.program_code = g.program_code AND pd.as_of_date = g.as_of_date AND pd.metric = g.metric
LEFT JOIN program_targets t ON t.program_code = g.program_code AND t.metric = g.metric
ORDER BY 1, 2, 3
