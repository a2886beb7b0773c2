"""The published tables of ../shared/spec/kpis.md, as data: their names and keys.

One place for them: staging the candidate set orders by the keys, the gates
and the PostgreSQL serving schema copy these tables, and the history of
published sets (publishing/history.py) names a row by its key."""

from __future__ import annotations

KPI_KEYS: dict[str, tuple[str, ...]] = {
    "kpi_program_daily": ("program_code", "as_of_date"),
    "kpi_segment_daily": ("program_code", "as_of_date", "region", "business_type", "size_class"),
    "kpi_target_progress": ("program_code", "as_of_date", "metric"),
}
KPI_TABLES: tuple[str, ...] = tuple(KPI_KEYS)

# Beside the KPI tables, each set holds one row naming its run (run_id, ds, built_at).
RUN_INFO = "run_info"
SET_TABLES: tuple[str, ...] = (*KPI_TABLES, RUN_INFO)
