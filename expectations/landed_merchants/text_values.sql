SELECT DISTINCT 'business_name' AS column_name, business_name AS value FROM rows UNION ALL SELECT DISTINCT 'city', city FROM rows
