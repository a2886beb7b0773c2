SELECT report_id, merchant_id, period_month, employees, baseline_employees, verification_status,
       period_month <= date_trunc('month', CAST(getvariable('ds') AS DATE)) AS period_not_after_ds
FROM rows
