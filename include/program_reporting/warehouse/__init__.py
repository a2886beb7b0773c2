"""The warehouse: the dbt build of a business date and the candidate set it stages."""
