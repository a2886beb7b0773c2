SELECT event_id, credit_line_id, merchant_id, event_type, amount, currency, annual_interest_rate, due_on,
       event_type <> 'drawdown' OR due_on IS NOT NULL AS drawdown_has_due_on,
       event_type <> 'line_opened' OR annual_interest_rate IS NOT NULL AS opened_line_has_rate
FROM (SELECT DISTINCT event_id, credit_line_id, merchant_id, event_type, event_at, amount, currency,
                      annual_interest_rate, due_on, goods_category FROM rows)
