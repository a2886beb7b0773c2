"""The extract contract of ../shared/spec/extracts.md, as data.

One place for the columns, types and enums of the three sources: the
simulator, the PPP importer and landing all read them from here."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = "1"

BUSINESS_TYPES = (
    "convenience_store",
    "street_stall",
    "grocery",
    "restaurant",
    "retail_shop",
    "service",
    "exporter",
    "other",
)
SIZE_CLASSES = ("micro", "small", "medium")
MERCHANT_STATUSES = ("active", "suspended", "exited")
EVENT_TYPES = ("line_opened", "limit_changed", "drawdown", "repayment", "written_off", "line_closed")
GOODS_CATEGORIES = (
    "food",
    "beverages",
    "daily_necessities",
    "fresh_produce",
    "tobacco_alcohol",
    "household",
    "other",
)
VERIFICATION_STATUSES = ("self_reported", "verified")

PII_COLUMNS = ("owner_name", "owner_phone", "owner_national_id")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # string, date, timestamp, decimal, integer, month, enum
    required: bool = True
    max_length: int | None = None
    enum: tuple[str, ...] | None = None


MERCHANTS = (
    Column("merchant_id", "string", max_length=32),
    Column("program_code", "string"),
    Column("business_name", "string"),
    Column("owner_name", "string", required=False),
    Column("owner_phone", "string", required=False),
    Column("owner_national_id", "string", required=False),
    Column("region", "string"),
    Column("city", "string"),
    Column("business_type", "enum", enum=BUSINESS_TYPES),
    Column("size_class", "enum", enum=SIZE_CLASSES),
    Column("registered_on", "date", required=False),
    Column("enrolled_on", "date"),
    Column("status", "enum", enum=MERCHANT_STATUSES),
    Column("updated_at", "timestamp"),
)

CREDIT_EVENTS = (
    Column("event_id", "string", max_length=40),
    Column("credit_line_id", "string", max_length=32),
    Column("merchant_id", "string", max_length=32),
    Column("event_type", "enum", enum=EVENT_TYPES),
    Column("event_at", "timestamp"),
    Column("amount", "decimal"),
    Column("currency", "string"),
    Column("annual_interest_rate", "decimal", required=False),  # required for line_opened
    Column("due_on", "date", required=False),  # required for drawdown
    Column("goods_category", "enum", required=False, enum=GOODS_CATEGORIES),  # required for drawdown
)

EMPLOYMENT_REPORTS = (
    Column("report_id", "string", max_length=40),
    Column("merchant_id", "string", max_length=32),
    Column("period_month", "month"),
    Column("employees", "integer"),
    Column("baseline_employees", "integer"),
    Column("reported_at", "timestamp"),
    Column("verification_status", "enum", enum=VERIFICATION_STATUSES),
)

COLUMNS: dict[str, tuple[Column, ...]] = {
    "merchants": MERCHANTS,
    "credit_events": CREDIT_EVENTS,
    "employment_reports": EMPLOYMENT_REPORTS,
}


def column_names(source: str) -> list[str]:
    return [c.name for c in COLUMNS[source]]


def data_file_name(source: str, gzipped: bool = False) -> str:
    return f"{source}.csv.gz" if gzipped else f"{source}.csv"


CONTROL_FILE = "_control.json"
