"""What the build records besides the tables (warehouse/catalog.py): dbt's
source freshness and dbt's docs page, with the real dbt on the small data set
of test_warehouse.py, over two nights."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import duckdb
import pytest
from helpers.offline_page import external_loads
from helpers.warehouse_raw import LAST_DS, small_set, write_nights

from program_reporting.core.settings import Paths
from program_reporting.warehouse import build as build_mod
from program_reporting.warehouse import catalog

pytestmark = pytest.mark.timeout(600)
FIRST_NIGHT = "2020-04-23"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """A full build through 04-23 staged as run n1, then the incremental night of 04-24 (n2)."""
    root = tmp_path_factory.mktemp("catalog")
    paths = Paths(drop=root / "drop", home=root / "home")
    data = small_set()
    write_nights(paths.raw, data, through=FIRST_NIGHT)
    first = build_mod.build(FIRST_NIGHT, "n1", paths=paths)
    build_mod.stage_audit("n1", FIRST_NIGHT, paths=paths)
    first_page = sha256(catalog.folder(paths) / catalog.DOCS_PAGE)
    write_nights(paths.raw, data, through=LAST_DS, since=LAST_DS)
    second = build_mod.build(LAST_DS, "n2", paths=paths)
    return paths, first, second, first_page


def embedded(page: str) -> dict:
    """The two artifacts the page inlines where dbt's own index.html has its placeholders."""
    from dbt.task.docs import DOCS_INDEX_FILE_PATH

    original = open(DOCS_INDEX_FILE_PATH, encoding="utf-8").read()
    slots = sorted((original.index(slot), slot) for slot in (catalog.MANIFEST_SLOT, catalog.CATALOG_SLOT))
    found, at, prev_end = {}, 0, 0
    for start, slot in slots:
        at += start - prev_end  # the page's text between the slots is dbt's
        assert page[at - (start - prev_end) : at] == original[prev_end:start]
        found[slot], at = json.JSONDecoder().raw_decode(page, at)
        prev_end = start + len(slot)
    return {"manifest": found[catalog.MANIFEST_SLOT], "catalog": found[catalog.CATALOG_SLOT]}


def test_every_landed_source_is_checked_for_freshness(nights):
    paths, first, second, _ = nights
    for summary in (first, second):
        assert summary["source_freshness"] == {
            "raw.credit_events": "pass",
            "raw.employment_reports": "pass",
            "raw.merchants": "pass",
        }
    record = json.loads((catalog.folder(paths) / catalog.FRESHNESS_FILE).read_text())
    newest = {}
    con = duckdb.connect()
    for source in ("merchants", "credit_events", "employment_reports"):
        newest[f"raw.{source}"] = con.execute(
            f"SELECT max(_landed_at) FROM read_parquet('{paths.raw}/{source}/ds=*/*.parquet')"
        ).fetchone()[0]
    con.close()
    by_source = {catalog.source_name(r["unique_id"]): r for r in record["results"]}
    assert set(by_source) == set(newest)  # not the build log or raw.partitions: they have no freshness
    for source, r in by_source.items():
        assert dt.datetime.fromisoformat(r["max_loaded_at"]) == newest[source]
        assert r["criteria"]["warn_after"] == {"count": 26, "period": "hour"}
        assert r["criteria"]["error_after"] == {"count": 50, "period": "hour"}


def test_docs_page_is_one_offline_page_of_the_project(nights):
    paths, _, second, _ = nights
    page_path = catalog.folder(paths) / catalog.DOCS_PAGE
    assert second["docs_page"] == str(page_path)
    page = page_path.read_text(encoding="utf-8")
    assert catalog.MANIFEST_SLOT not in page and catalog.CATALOG_SLOT not in page
    assert external_loads(page) == []
    # the reader does see such loads (scripts' own strings are not elements)
    assert len(external_loads('<script src="//cdn.example/a.js"></script><link href="https://e.example/s.css">')) == 2
    assert external_loads('<script>var s = "<img src=https://e.example/x.png>";</script>') == []
    artifacts = embedded(page)
    manifest = artifacts["manifest"]
    assert manifest["metadata"]["send_anonymous_usage_stats"] is False  # dbt's page loads its tracker only if true
    assert not set(catalog.VOLATILE) & set(manifest["metadata"])
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert {"kpi_program_daily", "kpi_segment_daily", "kpi_target_progress", "stg_merchants"} <= models
    assert {"source.program_reporting.raw.merchants", "source.program_reporting.raw.credit_events"} <= set(
        manifest["sources"]
    )
    cat = artifacts["catalog"]
    columns = cat["nodes"]["model.program_reporting.kpi_program_daily"]["columns"]
    assert columns["as_of_date"]["type"].upper() == "DATE"  # the catalog read the warehouse's tables


def test_the_same_project_gives_the_same_page(nights):
    """Nothing in the page changes with the night: a report can keep one file per distinct page."""
    paths, _, _, first_page = nights
    assert sha256(catalog.folder(paths) / catalog.DOCS_PAGE) == first_page


def test_stage_audit_puts_the_records_beside_the_candidate_set(nights):
    paths, _, _, first_page = nights
    staged = paths.audit / "n1"
    assert sorted(p.name for p in staged.iterdir()) == [catalog.DOCS_PAGE, "kpi.duckdb", catalog.FRESHNESS_FILE]
    # n1's links kept n1's files when the next night's build replaced its own
    assert sha256(staged / catalog.DOCS_PAGE) == first_page
    assert json.loads((staged / catalog.FRESHNESS_FILE).read_text()) != json.loads(
        (catalog.folder(paths) / catalog.FRESHNESS_FILE).read_text()
    )
    build_mod.stage_audit("n2", LAST_DS, paths=paths)
    for name in (catalog.DOCS_PAGE, catalog.FRESHNESS_FILE):
        assert (paths.audit / "n2" / name).samefile(catalog.folder(paths) / name)  # linked, not copied


def test_the_builds_own_artifacts_stay_the_builds(nights):
    """Freshness and docs run in a dbt target of their own: dbt_target/ keeps what the build wrote."""
    paths, _, second, _ = nights
    target = paths.home / "warehouse" / "dbt_target"
    assert not (target / "sources.json").exists() and not (target / "catalog.json").exists()
    results = json.loads((target / "run_results.json").read_text())["results"]
    assert len(results) == second["nodes"]
    assert any(r["unique_id"] == "model.program_reporting.kpi_program_daily" for r in results)
    assert re.match(r"^\d+(\.\d+)?$", str(second["catalog_seconds"]))
