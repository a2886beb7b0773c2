"""Reporting: the validation reports compliance teams sign off, their chained index, and
the program director's KPI brief."""
