SELECT merchant_id, program_code, region, business_type, size_class, status, enrolled_on, registered_on,
       enrolled_on <= CAST(getvariable('ds') AS DATE) AS enrolled_by_ds,
       registered_on IS NULL OR registered_on <= enrolled_on AS registered_before_enrolled
FROM rows
