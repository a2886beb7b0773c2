SELECT run_id,
       CAST(ds AS VARCHAR) AS ds,
       CAST(built_at AS VARCHAR) AS built_at,
       run_id = getvariable('run_id') AS run_id_matches,
       CAST(ds AS DATE) = CAST(getvariable('ds') AS DATE) AS ds_matches
FROM run_info
