"""The names grant-region and revoke-region accept (postgres/access.py), and their --help."""

from __future__ import annotations

import pytest

from program_reporting import cli
from program_reporting.core.published import KPI_TABLES
from program_reporting.postgres import access


@pytest.mark.parametrize("role", ["guangdong_office", "_x", "a" * 63])
def test_plain_lower_case_role_names_are_accepted(role):
    assert access.check_role(role) == role


@pytest.mark.parametrize(
    "role",
    [
        "",
        "Guangdong",
        "1office",
        "a" * 64,
        'x"; DROP TABLE t; --',
        "a b",
        "bi_reader",
        "bi_regional",
        "pg_read_all_data",
    ],
)
def test_other_role_names_are_refused(role):
    with pytest.raises(access.AccessError):
        access.check_role(role)


def test_regions_are_upper_cased_deduplicated_and_checked_against_the_seed():
    assert access.check_regions(["cn-gd", "CN-GD", " US-VT "], known_only=True) == ["CN-GD", "US-VT"]
    with pytest.raises(access.AccessError, match="unknown regions CN-XX"):
        access.check_regions(["CN-GD", "CN-XX"], known_only=True)
    assert access.check_regions(["CN-XX"], known_only=False) == ["CN-XX"]  # revoking one since removed
    for bad in (["Guangdong"], ["CN-GD'--"], []):
        with pytest.raises(access.AccessError):
            access.check_regions(bad, known_only=False)


def test_the_regional_tables_are_published_tables_with_a_region_column():
    assert set(access.REGIONAL_TABLES) <= set(KPI_TABLES)
    assert access.REGIONAL_TABLES == {"kpi_segment_daily": "region"}


@pytest.mark.parametrize("command", ["init-warehouse", "grant-region", "revoke-region"])
def test_help_shows_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"program-reporting {command}" in out
