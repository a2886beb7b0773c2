"""Reference data shipped with the warehouse. The dbt seeds are the one
source of truth; Python reads the same CSV files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from program_reporting.core.settings import SEEDS_DIR


@dataclass(frozen=True)
class Program:
    code: str
    name: str
    country_code: str
    currency: str
    time_zone: str
    launched_on: str


def _rows(name: str) -> list[dict[str, str]]:
    with open(SEEDS_DIR / f"{name}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@cache
def programs() -> dict[str, Program]:
    return {
        r["program_code"]: Program(
            r["program_code"],
            r["program_name"],
            r["country_code"],
            r["currency"],
            r["time_zone"],
            r["launched_on"],
        )
        for r in _rows("programs")
    }


@cache
def regions() -> dict[str, str]:
    """region_code -> country_code"""
    return {r["region_code"]: r["country_code"] for r in _rows("regions")}


def regions_of(country_code: str) -> list[str]:
    return sorted(code for code, country in regions().items() if country == country_code)


@cache
def benchmark_rates() -> list[tuple[str, str, Decimal]]:
    return [(r["currency"], r["effective_from"], Decimal(r["annual_rate"])) for r in _rows("benchmark_rates")]


@cache
def program_targets() -> list[tuple[str, str, Decimal]]:
    return [(r["program_code"], r["metric"], Decimal(r["target_value"])) for r in _rows("program_targets")]
