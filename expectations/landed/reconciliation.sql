SELECT source, CAST(ds AS VARCHAR) AS ds, file, sha256, control_row_count, delivered, loaded, quarantined, held,
       delivered - loaded - quarantined - held AS identity_gap,
       control_row_count - delivered AS control_gap,
       loaded - (SELECT count(*) FROM rows) AS loaded_gap,
       CASE WHEN delivered > 0 THEN quarantined / delivered ELSE 0 END AS quarantined_share
FROM reconciliation
