-- The build's raw floor: kpi_program_daily computed from the landed raw
-- layer by one hand-written DuckDB script, no dbt, no incremental state.
-- The benchmark times it beside the dbt full build; tests also compare its
-- output with the dbt mart, since it is an independent reading of kpis.md.
--
-- Method: every quantity is piecewise constant (or, for the subsidy,
-- piecewise linear) between change points: event dates, merchant version
-- changes, PAR thresholds (first overdue due_on + 30/90) and benchmark-rate
-- changes. Each piece emits +value at its start and -value the day after its
-- end; running sums over the date spine give every day's figure, so the cost
-- grows with events, not with lines x days.
--
-- Placeholders filled in by bench/floor.py: {raw}, {seeds}.

SET preserve_insertion_order = false;

-- exact division, rounded half away from zero to `scale` decimals: DuckDB's
-- DECIMAL division returns DOUBLE, which a published figure must never be.
CREATE OR REPLACE TEMP MACRO scaled(x) AS CAST(CAST(x AS DECIMAL(38, 8)) * 100000000 AS HUGEINT);
CREATE OR REPLACE TEMP MACRO exact_div(n, m, scale) AS
    CASE WHEN m IS NULL OR m = 0 OR n IS NULL THEN NULL ELSE
        CAST(sign(scaled(n)) * sign(scaled(m))
             * ((2 * abs(scaled(n)) * CAST(10 ** scale AS HUGEINT) + abs(scaled(m))) // (2 * abs(scaled(m))))
             AS DECIMAL(38, 0)) * CAST(1 / 10 ** scale AS DECIMAL(38, 10)) END;

CREATE OR REPLACE TEMP TABLE programs AS
SELECT program_code, currency, time_zone FROM read_csv('{seeds}/programs.csv', header = true, all_varchar = true);

CREATE OR REPLACE TEMP TABLE bench AS
SELECT currency, CAST(effective_from AS DATE) AS eff_from,
       coalesce(lead(CAST(effective_from AS DATE)) OVER (PARTITION BY currency ORDER BY CAST(effective_from AS DATE)) - 1,
                DATE '9999-12-31') AS eff_to,
       CAST(annual_rate AS DECIMAL(12, 6)) AS bench_rate
FROM read_csv('{seeds}/benchmark_rates.csv', header = true, all_varchar = true);

CREATE OR REPLACE TEMP TABLE latest AS
SELECT max(_ds) AS latest_ds FROM (
    SELECT _ds FROM read_parquet('{raw}/merchants/ds=*/*.parquet', union_by_name = true, hive_partitioning = false)
    UNION ALL SELECT _ds FROM read_parquet('{raw}/credit_events/ds=*/*.parquet', union_by_name = true, hive_partitioning = false)
    UNION ALL SELECT _ds FROM read_parquet('{raw}/employment_reports/ds=*/*.parquet', union_by_name = true, hive_partitioning = false));

-- ---------------------------------------------------------------- merchants
CREATE OR REPLACE TEMP TABLE m AS
SELECT r.merchant_id, r.program_code, r.region, r.business_type, r.size_class, r.enrolled_on, r.status,
       CAST(timezone(p.time_zone, r.updated_at) AS DATE) AS upd_date,
       row_number() OVER (PARTITION BY r.merchant_id ORDER BY r.updated_at, r._ds, r._line) AS vno
FROM read_parquet('{raw}/merchants/ds=*/*.parquet', union_by_name = true, hive_partitioning = false) r
JOIN programs p USING (program_code);

-- version intervals: the last version of each local update date holds until
-- the next update date; before the first, the earliest version holds from
-- its enrolled_on (kpis.md).
CREATE OR REPLACE TEMP TABLE mv AS
WITH per_day AS (
    SELECT * FROM m QUALIFY row_number() OVER (PARTITION BY merchant_id, upd_date ORDER BY vno DESC) = 1
), first_v AS (SELECT * FROM m WHERE vno = 1)
SELECT merchant_id, program_code, region, business_type, size_class, enrolled_on, status,
       upd_date AS valid_from,
       coalesce(lead(upd_date) OVER (PARTITION BY merchant_id ORDER BY upd_date) - 1, DATE '9999-12-31') AS valid_to
FROM per_day
UNION ALL
SELECT merchant_id, program_code, region, business_type, size_class, enrolled_on, status,
       enrolled_on, upd_date - 1
FROM first_v WHERE enrolled_on < upd_date;

-- the segment a merchant's lines count in on every date: the version at d, or
-- the earliest version while the merchant is not yet known.
CREATE OR REPLACE TEMP TABLE seg_iv AS
SELECT merchant_id, program_code, region, business_type, size_class, valid_from, valid_to FROM mv
UNION ALL
SELECT f.merchant_id, f.program_code, f.region, f.business_type, f.size_class, DATE '0001-01-01',
       (SELECT min(valid_from) FROM mv WHERE mv.merchant_id = f.merchant_id) - 1
FROM m f WHERE f.vno = 1;

-- ---------------------------------------------------------------- credit lines
CREATE OR REPLACE TEMP TABLE ev AS
SELECT e.event_id, e.credit_line_id, e.merchant_id, e.event_type, e.event_at, e.amount,
       e.annual_interest_rate, e.due_on, f.program_code,
       CAST(timezone(p.time_zone, e.event_at) AS DATE) AS ed
FROM (SELECT * FROM read_parquet('{raw}/credit_events/ds=*/*.parquet', union_by_name = true, hive_partitioning = false)
      QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _ds, _line) = 1) e
JOIN (SELECT merchant_id, program_code FROM m WHERE vno = 1) f USING (merchant_id)
JOIN programs p ON p.program_code = f.program_code;

-- one state per line and change date, holding until the next change date.
-- A line changes on its event dates and on the dates a drawdown starts to
-- count as 30 (90) days past due. Repayments and write-offs are allocated
-- oldest due_on first, so the line is at least k days past due at d exactly
-- when the drawdowns due on or before d - k (and drawn by d) exceed
-- everything allocated to date: each drawdown enters that sum x<k> on
-- max(its event date, due_on + k). Linear in events, no pairing of states
-- with drawdowns.
CREATE OR REPLACE TEMP TABLE line_state AS
WITH changes AS (
    SELECT credit_line_id, merchant_id, program_code, ed AS d, event_type, event_at, event_id, amount,
           annual_interest_rate, 0 AS k
    FROM ev
    UNION ALL
    SELECT credit_line_id, merchant_id, program_code, greatest(ed, due_on + t.k), 'threshold', NULL, NULL, amount,
           NULL, t.k
    FROM ev CROSS JOIN (VALUES (30), (90)) t(k)
    WHERE event_type = 'drawdown' AND due_on IS NOT NULL
), per_day AS (
    SELECT credit_line_id, any_value(merchant_id) AS merchant_id, any_value(program_code) AS program_code, d,
           coalesce(sum(amount) FILTER (event_type = 'drawdown'), 0) AS d_drawn,
           coalesce(sum(amount) FILTER (event_type = 'repayment'), 0) AS d_repaid,
           coalesce(sum(amount) FILTER (event_type = 'written_off'), 0) AS d_written,
           coalesce(sum(amount) FILTER (k = 30), 0) AS d_x30,
           coalesce(sum(amount) FILTER (k = 90), 0) AS d_x90,
           count(*) FILTER (event_type = 'line_opened') AS n_opened,
           count(*) FILTER (event_type = 'line_closed') AS n_closed,
           arg_max(amount, {'t': event_at, 'id': event_id}) FILTER (event_type IN ('line_opened', 'limit_changed')) AS day_limit,
           arg_max(annual_interest_rate, {'t': event_at, 'id': event_id}) FILTER (event_type = 'line_opened') AS day_rate
    FROM changes GROUP BY credit_line_id, d
), cum AS (
    SELECT *,
        sum(d_drawn) OVER w AS drawn, sum(d_repaid) OVER w AS repaid, sum(d_written) OVER w AS written,
        sum(d_x30) OVER w AS x30, sum(d_x90) OVER w AS x90,
        sum(n_opened) OVER w > 0 AND sum(n_closed) OVER w = 0 AS is_open,
        last_value(day_limit IGNORE NULLS) OVER w AS line_limit,
        last_value(day_rate IGNORE NULLS) OVER w AS line_rate,
        coalesce(lead(d) OVER (PARTITION BY credit_line_id ORDER BY d) - 1, DATE '9999-12-31') AS state_to
    FROM per_day
    WINDOW w AS (PARTITION BY credit_line_id ORDER BY d ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT credit_line_id, merchant_id, program_code, d AS state_from, state_to, drawn, repaid, written,
       greatest(0, drawn - repaid - written) AS outstanding, is_open, coalesce(line_limit, 0) AS line_limit, line_rate,
       CASE WHEN x90 > repaid + written THEN 90 WHEN x30 > repaid + written THEN 30 ELSE 0 END AS band
FROM cum;

-- pieces: line state x segment interval x benchmark interval
CREATE OR REPLACE TEMP TABLE pieces AS
WITH banded AS (
    SELECT *, state_from AS band_from, state_to AS band_to FROM line_state
), seg AS (
    SELECT bd.*, si.region, si.business_type, si.size_class,
           greatest(bd.band_from, si.valid_from) AS p_from, least(bd.band_to, si.valid_to) AS p_to
    FROM banded bd JOIN seg_iv si ON si.merchant_id = bd.merchant_id
         AND si.valid_from <= bd.band_to AND si.valid_to >= bd.band_from
    WHERE bd.band_from <= bd.band_to
), rated AS (  -- the days before a currency's first benchmark contribute nothing
    SELECT sg.*, b.bench_rate, greatest(sg.p_from, coalesce(b.eff_from, sg.p_from)) AS q_from,
           least(sg.p_to, coalesce(b.eff_to, sg.p_to)) AS q_to
    FROM seg sg JOIN programs p USING (program_code)
    LEFT JOIN bench b ON b.currency = p.currency AND b.eff_from <= sg.p_to AND b.eff_to >= sg.p_from
)
SELECT *, least(q_to, (SELECT latest_ds FROM latest)) AS q_end,
       -- the day's subsidy times 365, exact (divided once, at the end)
       CAST(outstanding AS DECIMAL(38, 2)) * greatest(0, coalesce(bench_rate, 0) - coalesce(line_rate, bench_rate, 0)) AS cost365
FROM rated WHERE q_from <= q_to AND q_from <= (SELECT latest_ds FROM latest);

-- subsidy accrued by a line before each piece starts
CREATE OR REPLACE TEMP TABLE pieces_acc AS
SELECT *, coalesce(sum(cost365 * (q_end - q_from + 1)) OVER (
              PARTITION BY credit_line_id ORDER BY q_from
              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS acc365_before
FROM pieces;

-- ---------------------------------------------------------------- deltas
-- Every piece emits its values at its first day and takes them back the day
-- after its last. The subsidy of a piece is linear in the day number n:
-- acc_before + cost * (n - n_from + 1) = a + cost * n.
CREATE OR REPLACE TEMP MACRO dnum(d) AS (d - DATE '2000-01-01');

CREATE OR REPLACE TEMP TABLE deltas AS
WITH line_v AS (
    SELECT program_code, region, business_type, size_class, q_from AS d_from, q_end AS d_to,
           is_open::INT AS open_lines, CASE WHEN is_open THEN line_limit ELSE 0 END AS limit_total,
           drawn, repaid, written, outstanding,
           CASE WHEN band >= 30 THEN outstanding ELSE 0 END AS par30,
           CASE WHEN band = 90 THEN outstanding ELSE 0 END AS par90,
           acc365_before - cost365 * (dnum(q_from) - 1) AS sub_a, cost365 AS sub_c
    FROM pieces_acc
), merchant_open AS (  -- distinct merchants with an open line: islands per merchant
    SELECT merchant_id, program_code, d, sum(step) AS step FROM (
        SELECT merchant_id, program_code, state_from AS d, 1 AS step FROM line_state WHERE is_open
        UNION ALL
        SELECT merchant_id, program_code, state_to + 1, -1 FROM line_state WHERE is_open AND state_to < DATE '9999-12-31'
    ) GROUP BY ALL
), merchant_open_iv AS (
    SELECT merchant_id, program_code, d AS o_from,
           coalesce(lead(d) OVER (PARTITION BY merchant_id ORDER BY d) - 1, DATE '9999-12-31') AS o_to,
           sum(step) OVER (PARTITION BY merchant_id ORDER BY d) AS n_open
    FROM merchant_open
), with_credit AS (
    SELECT o.program_code, si.region, si.business_type, si.size_class,
           greatest(o.o_from, si.valid_from) AS d_from, least(o.o_to, si.valid_to) AS d_to
    FROM merchant_open_iv o JOIN seg_iv si ON si.merchant_id = o.merchant_id
         AND si.valid_from <= o.o_to AND si.valid_to >= o.o_from
    WHERE o.n_open > 0
), goods AS (
    SELECT e.program_code, si.region, si.business_type, si.size_class, e.ed AS d_from, e.ed AS d_to, sum(e.amount) AS goods
    FROM ev e JOIN seg_iv si ON si.merchant_id = e.merchant_id AND e.ed BETWEEN si.valid_from AND si.valid_to
    WHERE e.event_type = 'drawdown' GROUP BY ALL
), enrolled AS (
    SELECT program_code, region, business_type, size_class, merchant_id, enrolled_on, status,
           greatest(valid_from, enrolled_on) AS d_from, valid_to AS d_to
    FROM mv WHERE greatest(valid_from, enrolled_on) <= valid_to
), reports AS (
    SELECT r.merchant_id, r.period_month, r.employees, r.baseline_employees,
           coalesce(lead(r.period_month) OVER (PARTITION BY r.merchant_id ORDER BY r.period_month) - 1, DATE '9999-12-31') AS r_to
    FROM (SELECT * FROM read_parquet('{raw}/employment_reports/ds=*/*.parquet', union_by_name = true, hive_partitioning = false)
          QUALIFY row_number() OVER (PARTITION BY merchant_id, period_month ORDER BY reported_at DESC, report_id DESC) = 1) r
), jobs AS (
    SELECT e.program_code, e.region, e.business_type, e.size_class,
           greatest(e.d_from, r.period_month) AS d_from, least(e.d_to, r.r_to) AS d_to,
           r.employees, r.baseline_employees
    FROM enrolled e JOIN reports r ON r.merchant_id = e.merchant_id
         AND r.period_month <= e.d_to AND r.r_to >= e.d_from
), survival AS (
    SELECT e.program_code, e.region, e.business_type, e.size_class,
           greatest(e.d_from, e.enrolled_on + 90) AS d_from, e.d_to,
           (coalesce(at90.status, first_v.status) <> 'exited')::INT AS survived
    FROM enrolled e
    LEFT JOIN mv at90 ON at90.merchant_id = e.merchant_id AND e.enrolled_on + 90 BETWEEN at90.valid_from AND at90.valid_to
    JOIN m first_v ON first_v.merchant_id = e.merchant_id AND first_v.vno = 1
    WHERE greatest(e.d_from, e.enrolled_on + 90) <= e.d_to
), pieces_all AS (
    SELECT program_code, region, business_type, size_class, d_from, d_to,
           0 AS enrolled, 0 AS active, 0 AS exited, open_lines, 0 AS with_credit, limit_total,
           drawn, 0 AS goods, repaid, written, outstanding, par30, par90, sub_a, sub_c,
           0 AS reporting, 0 AS jobs_baseline, 0 AS jobs_current, 0 AS jobs_retained, 0 AS jobs_added,
           0 AS cohort, 0 AS survivors
    FROM line_v
    UNION ALL BY NAME SELECT program_code, region, business_type, size_class, d_from, d_to, 1 AS with_credit FROM with_credit
    UNION ALL BY NAME SELECT program_code, region, business_type, size_class, d_from, d_to, goods FROM goods
    UNION ALL BY NAME SELECT program_code, region, business_type, size_class, d_from, d_to, 1 AS enrolled,
           (status = 'active')::INT AS active, (status = 'exited')::INT AS exited FROM enrolled
    UNION ALL BY NAME SELECT program_code, region, business_type, size_class, d_from, d_to, 1 AS reporting,
           baseline_employees AS jobs_baseline, employees AS jobs_current,
           least(employees, baseline_employees) AS jobs_retained,
           greatest(employees - baseline_employees, 0) AS jobs_added FROM jobs
    UNION ALL BY NAME SELECT program_code, region, business_type, size_class, d_from, d_to, 1 AS cohort,
           survived AS survivors FROM survival
), signed AS (
    SELECT *, 1 AS sgn FROM pieces_all
    UNION ALL
    SELECT * REPLACE (d_to + 1 AS d_from), -1 FROM pieces_all WHERE d_to < DATE '9999-12-31'
)
SELECT program_code, region, business_type, size_class, d_from AS d,
       sum(sgn * coalesce(enrolled, 0)) AS enrolled, sum(sgn * coalesce(active, 0)) AS active,
       sum(sgn * coalesce(exited, 0)) AS exited, sum(sgn * coalesce(open_lines, 0)) AS open_lines,
       sum(sgn * coalesce(with_credit, 0)) AS with_credit,
       sum(sgn * coalesce(limit_total, 0)) AS limit_total, sum(sgn * coalesce(drawn, 0)) AS drawn,
       sum(sgn * coalesce(goods, 0)) AS goods, sum(sgn * coalesce(repaid, 0)) AS repaid,
       sum(sgn * coalesce(written, 0)) AS written, sum(sgn * coalesce(outstanding, 0)) AS outstanding,
       sum(sgn * coalesce(par30, 0)) AS par30, sum(sgn * coalesce(par90, 0)) AS par90,
       sum(sgn * coalesce(sub_a, 0)) AS sub_a, sum(sgn * coalesce(sub_c, 0)) AS sub_c,
       sum(sgn * coalesce(reporting, 0)) AS reporting, sum(sgn * coalesce(jobs_baseline, 0)) AS jobs_baseline,
       sum(sgn * coalesce(jobs_current, 0)) AS jobs_current, sum(sgn * coalesce(jobs_retained, 0)) AS jobs_retained,
       sum(sgn * coalesce(jobs_added, 0)) AS jobs_added, sum(sgn * coalesce(cohort, 0)) AS cohort,
       sum(sgn * coalesce(survivors, 0)) AS survivors
FROM signed GROUP BY ALL;

-- running sums per segment, then every date of the spine takes the latest
-- running sum at or before it
CREATE OR REPLACE TEMP TABLE seg_daily AS
WITH running AS (
    SELECT program_code, region, business_type, size_class, d,
           sum(COLUMNS(* EXCLUDE (program_code, region, business_type, size_class, d)))
               OVER (PARTITION BY program_code, region, business_type, size_class ORDER BY d)
    FROM deltas
), spine AS (
    SELECT program_code, unnest(generate_series(min(enrolled_on), (SELECT latest_ds FROM latest), INTERVAL 1 DAY))::DATE AS as_of_date
    FROM mv GROUP BY program_code
), segs AS (SELECT DISTINCT program_code, region, business_type, size_class FROM deltas)
SELECT s.program_code, s.as_of_date, g.region, g.business_type, g.size_class, r.* EXCLUDE (program_code, region, business_type, size_class, d),
       exact_div(r.sub_a + r.sub_c * dnum(s.as_of_date), 365, 2) AS subsidy
FROM spine s JOIN segs g USING (program_code)
ASOF JOIN running r ON r.program_code = g.program_code AND r.region = g.region
     AND r.business_type = g.business_type AND r.size_class = g.size_class AND r.d <= s.as_of_date;

CREATE OR REPLACE TABLE floor_kpi_program_daily AS
WITH p AS (
    SELECT program_code, as_of_date,
           sum(enrolled) AS enrolled, sum(active) AS active, sum(exited) AS exited, sum(open_lines) AS open_lines,
           sum(with_credit) AS with_credit, sum(limit_total) AS limit_total, sum(drawn) AS drawn,
           sum(goods) AS goods, sum(repaid) AS repaid, sum(written) AS written, sum(outstanding) AS outstanding,
           sum(par30) AS par30, sum(par90) AS par90, sum(subsidy) AS subsidy, sum(reporting) AS reporting,
           sum(jobs_baseline) AS jobs_baseline, sum(jobs_current) AS jobs_current,
           sum(jobs_retained) AS jobs_retained, sum(jobs_added) AS jobs_added,
           sum(cohort) AS cohort, sum(survivors) AS survivors
    FROM seg_daily GROUP BY program_code, as_of_date
)
SELECT p.program_code, p.as_of_date,
       CAST(enrolled AS BIGINT) AS enrolled_merchants, CAST(active AS BIGINT) AS active_merchants,
       CAST(exited AS BIGINT) AS exited_merchants, CAST(open_lines AS BIGINT) AS open_credit_lines,
       CAST(with_credit AS BIGINT) AS merchants_with_credit,
       CAST(limit_total AS DECIMAL(18, 2)) AS credit_limit_total,
       CAST(exact_div(limit_total, with_credit, 2) AS DECIMAL(18, 2)) AS avg_limit_per_merchant,
       CAST(drawn AS DECIMAL(18, 2)) AS drawn_to_date, CAST(goods AS DECIMAL(18, 2)) AS goods_purchased_on_day,
       CAST(repaid AS DECIMAL(18, 2)) AS repaid_to_date, CAST(written AS DECIMAL(18, 2)) AS written_off_to_date,
       CAST(outstanding AS DECIMAL(18, 2)) AS outstanding_balance,
       CAST(exact_div(outstanding, limit_total, 6) AS DECIMAL(12, 6)) AS utilization_rate,
       CAST(par30 AS DECIMAL(18, 2)) AS par30_balance,
       CAST(exact_div(par30, outstanding, 6) AS DECIMAL(12, 6)) AS par30_rate,
       CAST(exact_div(par90, outstanding, 6) AS DECIMAL(12, 6)) AS par90_rate,
       CAST(exact_div(written, drawn, 6) AS DECIMAL(12, 6)) AS default_rate,
       CAST(CASE WHEN pr.currency IN (SELECT currency FROM bench) THEN subsidy END AS DECIMAL(18, 2)) AS interest_subsidy_cost_to_date,
       CAST(reporting AS BIGINT) AS reporting_merchants,
       CAST(exact_div(reporting, enrolled, 6) AS DECIMAL(12, 6)) AS reporting_coverage,
       CAST(jobs_baseline AS BIGINT) AS jobs_baseline, CAST(jobs_current AS BIGINT) AS jobs_current,
       CAST(jobs_retained AS BIGINT) AS jobs_retained, CAST(jobs_added AS BIGINT) AS jobs_added,
       CAST(exact_div(jobs_retained, jobs_baseline, 6) AS DECIMAL(12, 6)) AS jobs_retention_rate,
       CAST(cohort AS BIGINT) AS survival_cohort_90d,
       CAST(exact_div(survivors, cohort, 6) AS DECIMAL(12, 6)) AS survival_rate_90d
FROM p JOIN programs pr USING (program_code)
ORDER BY program_code, as_of_date;
