-- The build's raw floor: kpi_program_daily computed by one hand-written
-- DuckDB script from the raw layer as bench/floor_load.sql loaded it, no dbt,
-- no incremental state. The benchmark times it beside the dbt full build and
-- checks that both give the same table, cell by cell; tests compare it with an
-- independent Python reading of kpis.md (tests/helpers/kpi_oracle.py).
--
-- Method: every figure is a sum of per-line or per-merchant values that
-- change on a few dates. Each change is a delta on its date; running sums of
-- the deltas over each program's date spine give every day's figure. Money in
-- integer cents, rates in millionths, the subsidy in 1e-8 x 365: exact.
--   - The credit lines are one stream of rows (line, date, kind, amount): the
--     drawdowns, repayments and write-offs, each drawdown again on the day it
--     becomes 30 (90) days past due, and the changes of the line's subsidy
--     rate (benchmark minus the line's rate). One window pass of running sums
--     gives each row's state after it and, taking its own delta off, before
--     it; the row's effect on the outstanding balance, the PAR balances and
--     the subsidy slope is after minus before. The effects of one line's rows
--     of one day add up to that day's change in whatever order they come, so
--     the stream is never grouped by day. No line x day grid, no joins of
--     states with drawdowns: linear in events.
--   - Only the subsidy is rounded by segment (kpis.md: the program figure is
--     the sum of the rounded segment figures), so only it is summed by
--     segment; the rows of lines whose merchant changes segment (few) are kept
--     per line and their accrued subsidy moves with them.
--   - Openings, limit changes and closings (few rows) and the merchant figures
--     are small computations beside the stream.
--
-- Placeholder filled in by bench/floor.py: {seeds}.

SET preserve_insertion_order = false;

-- n / m rounded half away from zero, in integers (exact; null when m is 0)
CREATE OR REPLACE TEMP MACRO div_half_away(n, m) AS
    CASE WHEN m <> 0 THEN sign(n) * sign(m) * ((2 * abs(CAST(n AS HUGEINT)) + abs(m)) // (2 * abs(CAST(m AS HUGEINT)))) END;
CREATE OR REPLACE TEMP MACRO dnum(d) AS (d - DATE '2000-01-01');
CREATE OR REPLACE TEMP MACRO money(cents) AS CAST(CAST(cents AS DECIMAL(18, 0)) * 0.01 AS DECIMAL(18, 2));
CREATE OR REPLACE TEMP MACRO fraction(n, m) AS
    CAST(CAST(div_half_away(CAST(n AS HUGEINT) * 1000000, m) AS DECIMAL(18, 0)) * 0.000001 AS DECIMAL(12, 6));

-- ---------------------------------------------------------------- reference data
CREATE OR REPLACE TEMP TABLE programs AS
SELECT CAST(row_number() OVER (ORDER BY program_code) AS TINYINT) AS prog, program_code, currency, time_zone
FROM read_csv('{seeds}/programs.csv', header = true, all_varchar = true);

CREATE OR REPLACE TEMP TABLE bench AS
SELECT currency, CAST(effective_from AS DATE) AS eff_from,
       coalesce(lead(CAST(effective_from AS DATE)) OVER (PARTITION BY currency ORDER BY CAST(effective_from AS DATE)) - 1,
                DATE '9999-12-31') AS eff_to,
       CAST(CAST(annual_rate AS DECIMAL(12, 6)) * 1000000 AS BIGINT) AS micro
FROM read_csv('{seeds}/benchmark_rates.csv', header = true, all_varchar = true);

-- the latest ds loaded by any source (a partition folder, rows or not)
CREATE OR REPLACE TEMP TABLE latest AS
SELECT max(CAST(regexp_extract(file, '/ds=([0-9]{4}-[0-9]{2}-[0-9]{2})/[^/]+$', 1) AS DATE)) AS latest_ds
FROM raw_partitions WHERE regexp_matches(file, '/ds=[0-9]{4}-[0-9]{2}-[0-9]{2}/[^/]+$');

-- ---------------------------------------------------------------- merchants
-- Version intervals (kpis.md "Merchant version at d"): one row per
-- (merchant, updated_at), the later ds then the later line winning a tie; the
-- last version of a local date holds until the next version's date; the
-- earliest version also before its first date, from its enrolled_on; the first
-- interval is attributed back to the start of time (the segment of a line
-- whose merchant is not known yet).
CREATE OR REPLACE TEMP TABLE mv AS
WITH typed AS (
    SELECT r.merchant_id, p.prog, r.region, r.business_type, r.size_class, r.enrolled_on, r.status,
           r.updated_at, r._ds, r._line, CAST(timezone(p.time_zone, r.updated_at) AS DATE) AS upd_date
    FROM raw_merchants r JOIN programs p USING (program_code)
), versions AS (
    SELECT * FROM typed
    QUALIFY row_number() OVER (PARTITION BY merchant_id, updated_at ORDER BY _ds DESC, _line DESC) = 1
), ordered AS (
    SELECT *, row_number() OVER (PARTITION BY merchant_id ORDER BY updated_at) AS vseq,
           row_number() OVER (PARTITION BY merchant_id, upd_date ORDER BY updated_at DESC) AS last_of_day
    FROM versions
), intervals AS (
    SELECT merchant_id, prog, region, business_type, size_class, enrolled_on, status, upd_date AS valid_from
    FROM ordered WHERE last_of_day = 1
    UNION ALL
    SELECT merchant_id, prog, region, business_type, size_class, enrolled_on, status, enrolled_on
    FROM ordered WHERE vseq = 1 AND enrolled_on < upd_date
)
SELECT *, coalesce(lead(valid_from) OVER w - 1, DATE '9999-12-31') AS valid_to,
       CASE WHEN row_number() OVER w = 1 THEN DATE '0001-01-01' ELSE valid_from END AS attributed_from
FROM intervals
WINDOW w AS (PARTITION BY merchant_id ORDER BY valid_from);

CREATE OR REPLACE TEMP TABLE segs AS
SELECT CAST(row_number() OVER () AS INTEGER) AS seg, *
FROM (SELECT DISTINCT prog, region, business_type, size_class FROM mv);

-- a merchant's segment periods: consecutive versions in one segment merged
CREATE OR REPLACE TEMP TABLE mseg AS
WITH s AS (
    SELECT mv.merchant_id, mv.attributed_from, mv.valid_to, segs.seg,
           CASE WHEN lag(segs.seg) OVER w = segs.seg THEN 0 ELSE 1 END AS starts
    FROM mv JOIN segs USING (prog, region, business_type, size_class)
    WINDOW w AS (PARTITION BY mv.merchant_id ORDER BY mv.attributed_from)
), n AS (
    SELECT *, sum(starts) OVER (PARTITION BY merchant_id ORDER BY attributed_from ROWS UNBOUNDED PRECEDING) AS pseq
    FROM s
)
SELECT merchant_id, pseq, seg, min(attributed_from) AS seg_from, max(valid_to) AS seg_to
FROM n GROUP BY merchant_id, pseq, seg;

-- per merchant: its program (of its earliest version), and its first segment;
-- a mover has more than one segment period
CREATE OR REPLACE TEMP TABLE merchant_info AS
SELECT m.merchant_id, s.prog, p.time_zone, p.currency, m.seg0, m.mover
FROM (SELECT merchant_id, arg_min(seg, pseq) AS seg0, count(*) > 1 AS mover FROM mseg GROUP BY merchant_id) m
JOIN segs s ON s.seg = m.seg0
JOIN programs p ON p.prog = s.prog;

-- ---------------------------------------------------------------- credit events
-- One row per event_id, the first copy (by ds, then line). Repeats are rare:
-- the candidates are the ids whose hash repeats (found by sorting the hashes,
-- cheaper than grouping 40M ids; DuckDB's string hash collides now and then,
-- which only adds candidates), and only their rows are ranked.
CREATE OR REPLACE TEMP TABLE repeated AS
SELECT DISTINCT h FROM (SELECT h, lag(h) OVER (ORDER BY h) AS prev FROM (SELECT hash(event_id) AS h FROM raw_credit_events))
WHERE h = prev;

CREATE OR REPLACE TEMP VIEW first_copies AS
SELECT * FROM raw_credit_events e ANTI JOIN repeated r ON hash(e.event_id) = r.h
UNION ALL
SELECT * FROM (
    SELECT e.* FROM raw_credit_events e SEMI JOIN repeated r ON hash(e.event_id) = r.h
    QUALIFY row_number() OVER (PARTITION BY e.event_id ORDER BY e._ds, e._line) = 1);

-- A line belongs to the merchant named on its earliest event (event_at, then
-- event_id), and counts in that merchant's program and segment. Nearly every
-- line names one merchant only: the earliest event is looked for only among
-- the lines naming several (whose events are then dated one by one, below).
-- A line whose merchant was never loaded does not count.
CREATE OR REPLACE TEMP TABLE lines AS
WITH agg AS (
    SELECT credit_line_id, min(merchant_id) AS m_min, max(merchant_id) AS m_max
    FROM raw_credit_events GROUP BY credit_line_id
), several AS (
    SELECT e.credit_line_id, arg_min(e.merchant_id, (e.event_at, e.event_id)) AS merchant_id
    FROM first_copies e
    JOIN merchant_info m USING (merchant_id)
    WHERE e.credit_line_id IN (SELECT credit_line_id FROM agg WHERE m_min <> m_max)
    GROUP BY e.credit_line_id
)
SELECT CAST(row_number() OVER (ORDER BY a.credit_line_id) AS INTEGER) AS line_no, a.credit_line_id, m.merchant_id,
       m.prog, m.time_zone, m.currency, m.seg0, m.mover, a.m_min <> a.m_max AS several_merchants
FROM agg a
LEFT JOIN several s USING (credit_line_id)
JOIN merchant_info m ON m.merchant_id = CASE WHEN a.m_min = a.m_max THEN a.m_min ELSE s.merchant_id END;

-- The events with their line's number, program and segment, and their date:
-- the local date of event_at in the program of the merchant named on the
-- event (a line naming one merchant: its merchant's); an event of a merchant
-- never loaded does not count.
CREATE OR REPLACE TEMP VIEW line_events AS
SELECT l.line_no, l.prog, l.seg0, l.mover, CAST(timezone(l.time_zone, e.event_at) AS DATE) AS ed, e.*
FROM first_copies e JOIN lines l USING (credit_line_id)
WHERE NOT l.several_merchants
UNION ALL
SELECT l.line_no, l.prog, l.seg0, l.mover, CAST(timezone(m.time_zone, e.event_at) AS DATE) AS ed, e.*
FROM first_copies e JOIN lines l USING (credit_line_id) JOIN merchant_info m ON m.merchant_id = e.merchant_id
WHERE l.several_merchants;

-- openings, limit changes and closings (few): one row per line and day
CREATE OR REPLACE TEMP TABLE line_days AS
WITH event_days AS (
    SELECT line_no, ed AS d,
           count(*) FILTER (event_type = 'line_opened') AS n_open, count(*) FILTER (event_type = 'line_closed') AS n_close,
           arg_max(CAST(amount * 100 AS BIGINT), (event_at, event_id))
               FILTER (event_type IN ('line_opened', 'limit_changed')) AS day_limit,
           arg_max(CAST(annual_interest_rate * 1000000 AS BIGINT), (event_at, event_id))
               FILTER (event_type = 'line_opened') AS day_rate
    FROM line_events
    WHERE event_type IN ('line_opened', 'limit_changed', 'line_closed')
    GROUP BY line_no, ed
), bench_days AS (  -- the line's subsidy rate also changes when the benchmark does (once it has a rate)
    SELECT l.line_no, b.eff_from AS d, 0 AS n_open, 0 AS n_close, NULL AS day_limit, NULL AS day_rate
    FROM (SELECT line_no, min(d) AS first_day FROM event_days GROUP BY line_no) f
    JOIN lines l USING (line_no) JOIN bench b ON b.currency = l.currency
    WHERE b.eff_from > f.first_day AND b.eff_from <= (SELECT latest_ds FROM latest)
)
SELECT line_no, d, sum(n_open) AS n_open, sum(n_close) AS n_close, max(day_limit) AS day_limit,
       max(day_rate) AS day_rate
FROM (SELECT * FROM event_days UNION ALL BY NAME SELECT * FROM bench_days)
GROUP BY line_no, d;

CREATE OR REPLACE TEMP TABLE line_levels AS
WITH running AS (
    SELECT ld.*, l.prog, l.merchant_id, l.currency,
           sum(n_open) OVER w > 0 AND sum(n_close) OVER w = 0 AS open_a,
           sum(n_open) OVER w - n_open > 0 AND sum(n_close) OVER w - n_close = 0 AS open_b,
           last_value(day_limit IGNORE NULLS) OVER w AS lim_a,
           last_value(day_rate IGNORE NULLS) OVER w AS rate_a
    FROM line_days ld JOIN lines l USING (line_no)
    WINDOW w AS (PARTITION BY ld.line_no ORDER BY ld.d ROWS UNBOUNDED PRECEDING)
), rated AS (
    SELECT r.*, CASE WHEN r.rate_a IS NOT NULL AND b.micro > r.rate_a THEN b.micro - r.rate_a ELSE 0 END AS c_a
    FROM running r LEFT JOIN bench b ON b.currency = r.currency AND r.d BETWEEN b.eff_from AND b.eff_to
)
SELECT line_no, prog, merchant_id, d,
       open_a::INT - open_b::INT AS d_open,
       (CASE WHEN open_a THEN coalesce(lim_a, 0) ELSE 0 END)
         - (CASE WHEN open_b THEN coalesce(lag(lim_a) OVER w, 0) ELSE 0 END) AS d_limit,
       c_a - coalesce(lag(c_a) OVER w, 0) AS d_c
FROM rated
WINDOW w AS (PARTITION BY line_no ORDER BY d);

-- ---------------------------------------------------------------- the stream
-- Rows (line, date, k, v): a line's drawdowns (k = 3), repayments (4) and
-- write-offs (5) on their event date, each drawdown again on the day it
-- becomes 30 (k = 30) and 90 (k = 90) days past due - max(its event date,
-- due_on + 30 (90)), not yet if that is after the latest ds - and the changes
-- of the line's subsidy rate c, the benchmark minus its rate (k = 1).
-- One window pass of running sums gives each line's net balance, the excess
-- of its drawdowns 30 (90) days past due over what was repaid or written off
-- (> 0: the line is that far past due), and c. A row's effects are the line's
-- state after it minus its state before it (after minus the row's own delta).
CREATE OR REPLACE TEMP MACRO d_net(k, v) AS CASE WHEN k = 3 THEN v WHEN k IN (4, 5) THEN -v ELSE 0 END;
CREATE OR REPLACE TEMP MACRO d_e30(k, v) AS CASE WHEN k = 30 THEN v WHEN k IN (4, 5) THEN -v ELSE 0 END;
CREATE OR REPLACE TEMP MACRO d_e90(k, v) AS CASE WHEN k = 90 THEN v WHEN k IN (4, 5) THEN -v ELSE 0 END;
CREATE OR REPLACE TEMP MACRO d_c(k, v) AS CASE WHEN k = 1 THEN v ELSE 0 END;

CREATE OR REPLACE TEMP TABLE stream_deltas AS
WITH stream_rows AS (
    SELECT e.line_no, e.prog, e.seg0, e.mover,
           CASE t.k WHEN 30 THEN greatest(e.ed, e.due_on + 30) WHEN 90 THEN greatest(e.ed, e.due_on + 90)
                    ELSE e.ed END AS d,
           t.k, CAST(e.amount * 100 AS BIGINT) AS v
    FROM (SELECT *, CASE event_type WHEN 'drawdown' THEN 3 WHEN 'repayment' THEN 4 WHEN 'written_off' THEN 5 END AS kind
          FROM line_events WHERE event_type IN ('drawdown', 'repayment', 'written_off')) e
    JOIN (VALUES (3), (4), (5), (30), (90)) t(k)
      ON t.k = e.kind OR (e.kind = 3 AND t.k >= 30 AND e.due_on + t.k <= (SELECT latest_ds FROM latest))
    UNION ALL
    SELECT ll.line_no, l.prog, l.seg0, l.mover, ll.d, 1, ll.d_c
    FROM line_levels ll JOIN lines l USING (line_no) WHERE ll.d_c <> 0
), running AS (
    SELECT *, sum(d_net(k, v)) OVER w AS net, sum(d_e30(k, v)) OVER w AS e30, sum(d_e90(k, v)) OVER w AS e90,
           sum(d_c(k, v)) OVER w AS c
    FROM stream_rows
    WINDOW w AS (PARTITION BY line_no ORDER BY d ROWS UNBOUNDED PRECEDING)
), effects AS (
    SELECT prog, CASE WHEN mover THEN NULL ELSE seg0 END AS seg, CASE WHEN mover THEN line_no END AS mover_line,
           d, k, v,
           greatest(net, 0) AS out_a, greatest(net - d_net(k, v), 0) AS out_b,
           e30 > 0 AS p30_a, e30 - d_e30(k, v) > 0 AS p30_b, e90 > 0 AS p90_a, e90 - d_e90(k, v) > 0 AS p90_b,
           greatest(net, 0) * c - greatest(net - d_net(k, v), 0) * (c - d_c(k, v)) AS d_slope
    FROM running
)
SELECT prog, seg, mover_line, d,
       sum(out_a - out_b) AS d_out,
       sum(CASE WHEN p30_a THEN out_a ELSE 0 END - CASE WHEN p30_b THEN out_b ELSE 0 END) AS d_par30,
       sum(CASE WHEN p90_a THEN out_a ELSE 0 END - CASE WHEN p90_b THEN out_b ELSE 0 END) AS d_par90,
       sum(d_slope) AS d_slope,
       sum(-d_slope * (dnum(d) - 1)) AS d_level,
       sum(v) FILTER (k = 3) AS drawn, sum(v) FILTER (k = 4) AS repaid, sum(v) FILTER (k = 5) AS written
FROM effects
GROUP BY prog, seg, mover_line, d;

-- the subsidy by segment: a mover's rows in the segment of their date, and at
-- each move its accrued subsidy (level and slope so far) taken from the old
-- segment and given to the new one
CREATE OR REPLACE TEMP TABLE seg_deltas AS
WITH mover_rows AS (
    SELECT l.line_no, sd.d, sd.d_slope, sd.d_level, l.merchant_id
    FROM stream_deltas sd JOIN lines l ON l.line_no = sd.mover_line
), moves AS (
    SELECT l.line_no, ms.seg, prev.seg AS prev_seg, ms.seg_from AS d
    FROM lines l
    JOIN mseg ms ON ms.merchant_id = l.merchant_id AND ms.pseq > 1
    JOIN mseg prev ON prev.merchant_id = l.merchant_id AND prev.pseq = ms.pseq - 1
    WHERE l.mover
), carried AS (
    SELECT mv.line_no, mv.seg, mv.prev_seg, mv.d, sum(r.d_slope) AS slope, sum(r.d_level) AS level
    FROM moves mv JOIN mover_rows r ON r.line_no = mv.line_no AND r.d < mv.d
    GROUP BY ALL
)
SELECT seg, d, sum(d_slope) AS d_slope, sum(d_level) AS d_level FROM (
    SELECT seg, d, d_slope, d_level FROM stream_deltas WHERE seg IS NOT NULL
    UNION ALL
    SELECT ms.seg, r.d, r.d_slope, r.d_level
    FROM mover_rows r JOIN mseg ms ON ms.merchant_id = r.merchant_id AND r.d BETWEEN ms.seg_from AND ms.seg_to
    UNION ALL SELECT seg, d, slope, level FROM carried
    UNION ALL SELECT prev_seg, d, -slope, -level FROM carried
) GROUP BY seg, d;

-- ---------------------------------------------------------------- merchant figures
CREATE OR REPLACE TEMP TABLE reports AS
WITH repeated AS (  -- as for credit events
    SELECT DISTINCT h FROM (SELECT h, lag(h) OVER (ORDER BY h) AS prev
                            FROM (SELECT hash(report_id) AS h FROM raw_employment_reports))
    WHERE h = prev
), copies AS (  -- a report_id delivered twice: the copy of the latest delivery
    SELECT * FROM raw_employment_reports e ANTI JOIN repeated r ON hash(e.report_id) = r.h
    UNION ALL
    SELECT * FROM (
        SELECT e.* FROM raw_employment_reports e SEMI JOIN repeated r ON hash(e.report_id) = r.h
        QUALIFY row_number() OVER (PARTITION BY e.report_id ORDER BY e._ds DESC, e._line DESC) = 1)
), winners AS (  -- per merchant and month: the latest reported_at, then the greatest report_id
    SELECT merchant_id, period_month,
           arg_max({'employees': employees, 'baseline': baseline_employees}, (reported_at, report_id)) AS r
    FROM copies GROUP BY merchant_id, period_month
)
SELECT merchant_id, period_month AS r_from,
       coalesce(lead(period_month) OVER (PARTITION BY merchant_id ORDER BY period_month) - 1, DATE '9999-12-31') AS r_to,
       r.employees, r.baseline
FROM winners;

CREATE OR REPLACE TEMP TABLE enrolled AS
SELECT merchant_id, prog, status, enrolled_on, greatest(enrolled_on, valid_from) AS e_from, valid_to AS e_to
FROM mv WHERE enrolled_on <= valid_to;

-- figure periods [f, t] by program: +value on f, -value on t + 1
CREATE OR REPLACE TEMP TABLE merchant_deltas AS
WITH survival AS (
    SELECT en.merchant_id, en.enrolled_on, (at90.status <> 'exited')::INT AS survived
    FROM (SELECT DISTINCT merchant_id, enrolled_on FROM mv) en
    JOIN mv at90 ON at90.merchant_id = en.merchant_id
     AND en.enrolled_on + 90 BETWEEN at90.attributed_from AND at90.valid_to
), credit AS (  -- merchants with an open line
    SELECT prog, merchant_id, d, (sum(d_open) OVER w > 0)::INT AS has_credit
    FROM (SELECT prog, merchant_id, d, sum(d_open) AS d_open FROM line_levels WHERE d_open <> 0 GROUP BY ALL)
    WINDOW w AS (PARTITION BY merchant_id ORDER BY d ROWS UNBOUNDED PRECEDING)
), periods AS (
    SELECT prog, e_from AS f, e_to AS t, 1 AS enrolled, (status = 'active')::INT AS active,
           (status = 'exited')::INT AS exited
    FROM enrolled
    UNION ALL BY NAME
    SELECT en.prog, greatest(en.enrolled_on + 90, en.e_from) AS f, en.e_to AS t, 1 AS cohort, s.survived AS survivors
    FROM enrolled en JOIN survival s USING (merchant_id, enrolled_on)
    WHERE en.enrolled_on + 90 <= en.e_to
    UNION ALL BY NAME
    SELECT en.prog, greatest(r.r_from, en.e_from) AS f, least(r.r_to, en.e_to) AS t, 1 AS reporting,
           r.baseline AS jobs_baseline, r.employees AS jobs_current,
           least(r.employees, r.baseline) AS jobs_retained, greatest(r.employees - r.baseline, 0) AS jobs_added
    FROM enrolled en JOIN reports r ON r.merchant_id = en.merchant_id AND r.r_from <= en.e_to AND r.r_to >= en.e_from
), edges AS (
    SELECT *, 1 AS sgn FROM periods
    UNION ALL
    SELECT * REPLACE (t + 1 AS f), -1 FROM periods WHERE t < DATE '9999-12-31'
)
SELECT prog, f AS d,
       sum(sgn * coalesce(enrolled, 0)) AS enrolled, sum(sgn * coalesce(active, 0)) AS active,
       sum(sgn * coalesce(exited, 0)) AS exited, sum(sgn * coalesce(cohort, 0)) AS cohort,
       sum(sgn * coalesce(survivors, 0)) AS survivors, sum(sgn * coalesce(reporting, 0)) AS reporting,
       sum(sgn * coalesce(jobs_baseline, 0)) AS jobs_baseline, sum(sgn * coalesce(jobs_current, 0)) AS jobs_current,
       sum(sgn * coalesce(jobs_retained, 0)) AS jobs_retained, sum(sgn * coalesce(jobs_added, 0)) AS jobs_added,
       0 AS with_credit
FROM edges GROUP BY prog, f
UNION ALL BY NAME
SELECT prog, d, sum(has_credit - coalesce(had_credit, 0)) AS with_credit
FROM (SELECT *, lag(has_credit) OVER (PARTITION BY merchant_id ORDER BY d) AS had_credit FROM credit)
GROUP BY prog, d;

-- ---------------------------------------------------------------- by program and date
CREATE OR REPLACE TEMP TABLE periods AS
SELECT prog, min(enrolled_on) AS first_date, (SELECT latest_ds FROM latest) AS latest_ds
FROM mv GROUP BY prog HAVING min(enrolled_on) <= (SELECT latest_ds FROM latest);

CREATE OR REPLACE TEMP TABLE spine AS
SELECT prog, CAST(unnest(generate_series(first_date, latest_ds, INTERVAL 1 DAY)) AS DATE) AS as_of_date FROM periods;

-- every change on the spine: those before its first date count from it (but
-- a day's goods only on their own date), those after the latest ds not yet
CREATE OR REPLACE TEMP TABLE program_daily AS
WITH changes AS (
    SELECT prog, d, drawn, repaid, written, d_out AS outstanding, d_par30 AS par30, d_par90 AS par90
    FROM stream_deltas
    UNION ALL BY NAME SELECT prog, d, d_open AS open_lines, d_limit AS limit_total FROM line_levels
    UNION ALL BY NAME SELECT * FROM merchant_deltas
), on_spine AS (
    SELECT c.prog, greatest(c.d, p.first_date) AS d,
           sum(c.drawn) AS drawn,
           sum(c.repaid) AS repaid,
           sum(c.written) AS written,
           sum(c.outstanding) AS outstanding,
           sum(c.par30) AS par30,
           sum(c.par90) AS par90,
           sum(c.open_lines) AS open_lines,
           sum(c.limit_total) AS limit_total,
           sum(c.enrolled) AS enrolled,
           sum(c.active) AS active,
           sum(c.exited) AS exited,
           sum(c.cohort) AS cohort,
           sum(c.survivors) AS survivors,
           sum(c.reporting) AS reporting,
           sum(c.jobs_baseline) AS jobs_baseline,
           sum(c.jobs_current) AS jobs_current,
           sum(c.jobs_retained) AS jobs_retained,
           sum(c.jobs_added) AS jobs_added,
           sum(c.with_credit) AS with_credit,
           sum(c.drawn) FILTER (c.d >= p.first_date) AS goods
    FROM changes c JOIN periods p USING (prog)
    WHERE c.d <= p.latest_ds
    GROUP BY c.prog, greatest(c.d, p.first_date)
)
SELECT s.prog, s.as_of_date,
       sum(coalesce(o.drawn, 0)) OVER w AS drawn,
       sum(coalesce(o.repaid, 0)) OVER w AS repaid,
       sum(coalesce(o.written, 0)) OVER w AS written,
       sum(coalesce(o.outstanding, 0)) OVER w AS outstanding,
       sum(coalesce(o.par30, 0)) OVER w AS par30,
       sum(coalesce(o.par90, 0)) OVER w AS par90,
       sum(coalesce(o.open_lines, 0)) OVER w AS open_lines,
       sum(coalesce(o.limit_total, 0)) OVER w AS limit_total,
       sum(coalesce(o.enrolled, 0)) OVER w AS enrolled,
       sum(coalesce(o.active, 0)) OVER w AS active,
       sum(coalesce(o.exited, 0)) OVER w AS exited,
       sum(coalesce(o.cohort, 0)) OVER w AS cohort,
       sum(coalesce(o.survivors, 0)) OVER w AS survivors,
       sum(coalesce(o.reporting, 0)) OVER w AS reporting,
       sum(coalesce(o.jobs_baseline, 0)) OVER w AS jobs_baseline,
       sum(coalesce(o.jobs_current, 0)) OVER w AS jobs_current,
       sum(coalesce(o.jobs_retained, 0)) OVER w AS jobs_retained,
       sum(coalesce(o.jobs_added, 0)) OVER w AS jobs_added,
       sum(coalesce(o.with_credit, 0)) OVER w AS with_credit,
       coalesce(o.goods, 0) AS goods
FROM spine s LEFT JOIN on_spine o ON o.prog = s.prog AND o.d = s.as_of_date
WINDOW w AS (PARTITION BY s.prog ORDER BY s.as_of_date);

-- the subsidy, rounded by segment, then summed
CREATE OR REPLACE TEMP TABLE program_subsidy AS
WITH on_spine AS (
    SELECT sd.seg, greatest(sd.d, p.first_date) AS d, sum(sd.d_slope) AS d_slope, sum(sd.d_level) AS d_level
    FROM seg_deltas sd JOIN segs USING (seg) JOIN periods p USING (prog)
    WHERE sd.d <= p.latest_ds
    GROUP BY ALL
), grid AS (
    SELECT s.prog, s.as_of_date, g.seg
    FROM spine s JOIN segs g USING (prog)
    WHERE g.seg IN (SELECT seg FROM on_spine)
), running AS (
    SELECT g.prog, g.as_of_date,
           sum(o.d_slope) OVER w AS slope, sum(o.d_level) OVER w AS level
    FROM grid g LEFT JOIN on_spine o ON o.seg = g.seg AND o.d = g.as_of_date
    WINDOW w AS (PARTITION BY g.seg ORDER BY g.as_of_date)
)
SELECT prog, as_of_date,
       sum(div_half_away(coalesce(level, 0) + coalesce(slope, 0) * dnum(as_of_date), 365 * 1000000)) AS subsidy
FROM running GROUP BY prog, as_of_date;

CREATE OR REPLACE TABLE floor_kpi_program_daily AS
SELECT pr.program_code, pd.as_of_date,
       CAST(coalesce(enrolled, 0) AS BIGINT) AS enrolled_merchants,
       CAST(coalesce(active, 0) AS BIGINT) AS active_merchants,
       CAST(coalesce(exited, 0) AS BIGINT) AS exited_merchants,
       CAST(coalesce(open_lines, 0) AS BIGINT) AS open_credit_lines,
       CAST(coalesce(with_credit, 0) AS BIGINT) AS merchants_with_credit,
       money(coalesce(limit_total, 0)) AS credit_limit_total,
       money(div_half_away(limit_total, with_credit)) AS avg_limit_per_merchant,
       money(coalesce(drawn, 0)) AS drawn_to_date,
       money(goods) AS goods_purchased_on_day,
       money(coalesce(repaid, 0)) AS repaid_to_date,
       money(coalesce(written, 0)) AS written_off_to_date,
       money(coalesce(outstanding, 0)) AS outstanding_balance,
       fraction(outstanding, limit_total) AS utilization_rate,
       money(coalesce(par30, 0)) AS par30_balance,
       fraction(par30, outstanding) AS par30_rate,
       fraction(par90, outstanding) AS par90_rate,
       fraction(written, drawn) AS default_rate,
       CASE WHEN pr.currency IN (SELECT currency FROM bench) THEN money(coalesce(ps.subsidy, 0)) END
           AS interest_subsidy_cost_to_date,
       CAST(coalesce(reporting, 0) AS BIGINT) AS reporting_merchants,
       fraction(reporting, enrolled) AS reporting_coverage,
       CAST(coalesce(jobs_baseline, 0) AS BIGINT) AS jobs_baseline,
       CAST(coalesce(jobs_current, 0) AS BIGINT) AS jobs_current,
       CAST(coalesce(jobs_retained, 0) AS BIGINT) AS jobs_retained,
       CAST(coalesce(jobs_added, 0) AS BIGINT) AS jobs_added,
       fraction(jobs_retained, jobs_baseline) AS jobs_retention_rate,
       CAST(coalesce(cohort, 0) AS BIGINT) AS survival_cohort_90d,
       fraction(survivors, cohort) AS survival_rate_90d
FROM program_daily pd
JOIN programs pr USING (prog)
LEFT JOIN program_subsidy ps USING (prog, as_of_date)
ORDER BY pr.program_code, pd.as_of_date;
