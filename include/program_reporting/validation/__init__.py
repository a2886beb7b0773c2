"""Validation: the Great Expectations gate (landed deliveries and the candidate KPI set)
and its suites (expectations/)."""
