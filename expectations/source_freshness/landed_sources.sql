-- One row per landed source, with what `dbt source freshness` found when the
-- build ran (the table source_freshness, from audit/<run_id>/source_freshness.json).
-- A source dbt did not check is 'not checked': a failure, never a pass.
SELECT
    expected.source,
    coalesce(f.status, 'not checked') AS status,
    round(f.age_hours, 1) AS age_hours,
    f.warn_after_hours,
    f.error_after_hours,
    f.max_loaded_at,
    f.snapshotted_at,
    coalesce(f.error, CASE WHEN f.source IS NULL THEN getvariable('no_freshness_result') END) AS error
FROM (SELECT unnest(getvariable('landed_sources')) AS source) AS expected
LEFT JOIN source_freshness AS f ON expected.source = f.source
ORDER BY expected.source
