"""Source freshness as a check of the marts gate, on real components: the
warehouse built by dbt on the small data set of test_warehouse.py, `dbt source
freshness` run by the build, the record staged beside the candidate set, and
the GX gate judging it (expectations/source_freshness.json).

The decision (docs/contract/extracts.md): a landed source whose newest row
landed within 26 hours passes; between 26 and 50 hours warns (reported,
published); older, not checked, or not checkable blocks."""

from __future__ import annotations

import json

import pytest
from helpers.warehouse_raw import LAST_DS, age_landings, small_set, write_nights

from program_reporting.core.settings import Paths
from program_reporting.validation import gate
from program_reporting.validation.candidate import GateBlocked, checked_candidate
from program_reporting.warehouse import build as build_mod
from program_reporting.warehouse.catalog import FRESHNESS_FILE

pytestmark = pytest.mark.timeout(900)

CRITICAL, WARNING = "sf_within_error_after", "sf_within_warn_after"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One warehouse for the module; each test builds a night on it and gates that."""
    root = tmp_path_factory.mktemp("freshness")
    paths = Paths(drop=root / "drop", home=root / "home")
    write_nights(paths.raw, small_set(), through=LAST_DS)
    build_mod.build(LAST_DS, "full", paths=paths)
    return paths


def night(paths: Paths, run_id: str):
    """A night's build, its candidate set staged, and the marts gate on it."""
    summary = build_mod.build(LAST_DS, run_id, paths=paths)
    build_mod.stage_audit(run_id, LAST_DS, paths=paths)
    return summary, gate.validate(run_id, LAST_DS, paths)


def checks(result) -> dict:
    return {r.check_id: r for r in result.results if r.suite == "source_freshness"}


def test_fresh_sources_pass(home):
    summary, result = night(home, "fresh")
    assert summary["source_freshness"] == {
        "raw.credit_events": "pass",
        "raw.employment_reports": "pass",
        "raw.merchants": "pass",
    }
    sf = checks(result)
    assert set(sf) == {CRITICAL, WARNING}
    assert all(c.status == "passed" and c.evaluated for c in sf.values())
    assert sf[CRITICAL].observed_value["rows"] == 3  # every landed source was judged
    assert result.passed, result.summary()
    read = result.inputs["source_freshness"]
    assert read["record"] == f"audit/fresh/{FRESHNESS_FILE}"
    assert sorted(s["source"] for s in read["sources"]) == [
        "raw.credit_events",
        "raw.employment_reports",
        "raw.merchants",
    ]
    assert all(
        s["age_hours"] < 1 and s["warn_after_hours"] == 26 and s["error_after_hours"] == 50 for s in read["sources"]
    )


def test_a_source_a_night_late_warns_and_publishes(home):
    age_landings(home.raw, "merchants", 30)
    summary, result = night(home, "late")
    assert summary["source_freshness"]["raw.merchants"] == "warn"
    sf = checks(result)
    assert sf[CRITICAL].status == "passed"
    assert sf[WARNING].status == "failed" and sf[WARNING].severity == "warning" and not sf[WARNING].blocking
    assert [r["source"] for r in sf[WARNING].failing_rows] == ["raw.merchants"]
    assert 29.9 < sf[WARNING].failing_rows[0]["age_hours"] < 30.5
    assert result.passed and WARNING in {w.check_id for w in result.warnings}
    checked_candidate("late", home)  # the verdict lets it be published


def test_a_source_two_nights_late_blocks(home):
    age_landings(home.raw, "merchants", 30)
    age_landings(home.raw, "credit_events", 60)
    summary, result = night(home, "stale")
    assert summary["source_freshness"]["raw.credit_events"] == "error"
    sf = checks(result)
    assert sf[CRITICAL].status == "failed" and sf[CRITICAL].blocking
    assert [r["source"] for r in sf[CRITICAL].failing_rows] == ["raw.credit_events"]
    assert {r["source"] for r in sf[WARNING].failing_rows} == {"raw.credit_events", "raw.merchants"}
    assert not result.passed
    assert f"source_freshness/{CRITICAL}" in result.reason()
    with pytest.raises(GateBlocked, match=CRITICAL):
        checked_candidate("stale", home)


def test_no_freshness_record_blocks(home):
    """A candidate set without its record (a build that stopped before it) evaluated no freshness: it fails."""
    build_mod.stage_audit("unrecorded", LAST_DS, paths=home)
    (home.audit / "unrecorded" / FRESHNESS_FILE).unlink()
    result = gate.validate("unrecorded", LAST_DS, home)
    sf = checks(result)
    assert sf[CRITICAL].status == "failed" and sf[CRITICAL].blocking
    assert {r["status"] for r in sf[CRITICAL].failing_rows} == {"not checked"}
    assert len(sf[CRITICAL].failing_rows) == 3
    assert "no freshness record" in sf[CRITICAL].failing_rows[0]["error"]
    assert not result.passed and result.inputs["source_freshness"] is None


@pytest.mark.parametrize(
    "results",
    [
        pytest.param([], id="freshness_selected_no_source"),
        pytest.param(
            [{"unique_id": "source.program_reporting.raw.merchants", "status": "runtime error", "error": "IO Error"}],
            id="runtime_error_and_two_sources_unchecked",
        ),
    ],
)
def test_a_record_that_judged_nothing_blocks(home, results):
    build_mod.stage_audit("judged-nothing", LAST_DS, paths=home)
    record = home.audit / "judged-nothing" / FRESHNESS_FILE
    record.unlink()
    record.write_text(json.dumps({"metadata": {}, "results": results}))
    result = gate.validate("judged-nothing", LAST_DS, home)
    sf = checks(result)
    assert sf[CRITICAL].status == "failed" and sf[CRITICAL].blocking, sf[CRITICAL]
    assert sf[CRITICAL].observed_value["unexpected"] == 3
    assert not result.passed


def test_a_failed_build_leaves_no_record_behind(home):
    """The record is the latest build's or none: a build that fails removes the previous night's."""
    from program_reporting.warehouse import catalog

    assert (catalog.folder(home) / FRESHNESS_FILE).exists()
    (home.raw / "merchants" / f"ds={LAST_DS}" / "broken.parquet").write_text("not parquet")
    with pytest.raises(build_mod.BuildFailed):
        build_mod.build(LAST_DS, "failed", paths=home)
    assert not (catalog.folder(home) / FRESHNESS_FILE).exists()
    assert not (catalog.folder(home) / catalog.DOCS_PAGE).exists()
