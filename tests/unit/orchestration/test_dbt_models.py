"""The nightly DAG's per-model status tasks (orchestration/dbt_models.py): the
task list read from the project's files, and each task's state from the
results a real `dbt build` kept (warehouse/dbt_results.py).

One real build (dbt + DuckDB) on the small hand-made raw layer of
test_warehouse.py, broken on purpose: a merchant without a business type
(stg_merchants' not_null test fails, so dbt skips what reads stg_merchants),
in an unknown region (a warning on stg_merchants), and an employment report
of a merchant nobody registered (a warning on stg_employment_reports)."""

from __future__ import annotations

import json
import logging
import re

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from helpers.warehouse_raw import LAST_DS, merchant_row, small_set, write_nights

from program_reporting.core.settings import Paths
from program_reporting.orchestration import dbt_models
from program_reporting.warehouse import build as build_mod
from program_reporting.warehouse import dbt_results

pytestmark = pytest.mark.timeout(600)

RUN_ID = "run-broken"


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    home = tmp_path_factory.mktemp("broken_night")
    paths = Paths(drop=home / "drop", home=home)
    data = small_set()
    data["merchants"][LAST_DS] = [
        merchant_row("D", "XX-99", None, "micro", "2020-04-20", "active", "2020-04-24T09:00:00+08:00")
    ]
    data["employment_reports"][LAST_DS] = [
        dict(
            report_id="r9",
            merchant_id="NOBODY",
            period_month="2020-04-01",
            employees=2,
            baseline_employees=2,
            reported_at="2020-04-24T10:00:00+08:00",
            verification_status="self_reported",
        )
    ]
    write_nights(paths.raw, data, through=LAST_DS)
    with pytest.raises(build_mod.BuildFailed, match="not_null_stg_merchants_business_type") as failed:
        build_mod.build(LAST_DS, RUN_ID, paths=paths)
    return paths, dbt_results.folder(paths.tmp, RUN_ID), failed.value


def test_the_task_list_is_every_model_dbt_builds(broken):
    """Read from the files at DAG parse time, no dbt: the same models the build ran."""
    _, where, _ = broken
    listed = dbt_models.models()
    assert list(listed) == ["staging", "intermediate", "marts"]
    assert "stg_merchants" in listed["staging"] and "kpi_program_daily" in listed["marts"]
    ran = json.loads((where / dbt_results.RUN_RESULTS).read_text())["results"]
    built = {r["unique_id"].split(".")[-1] for r in ran if r["unique_id"].startswith("model.")}
    assert sorted(n for names in listed.values() for n in names) == sorted(built)


def test_the_build_keeps_its_results_for_the_run(broken):
    """A failed build keeps them too, dbt's run_results.json as dbt writes it."""
    paths, where, _ = broken
    kept = json.loads((where / dbt_results.RUN_RESULTS).read_text())
    target = json.loads((paths.home / "warehouse" / "dbt_target" / "run_results.json").read_text())
    assert kept["metadata"]["invocation_id"] == target["metadata"]["invocation_id"]
    assert [r["unique_id"] for r in kept["results"]] == [r["unique_id"] for r in target["results"]]
    nodes = json.loads((where / dbt_results.NODES).read_text())
    test = next(
        v for k, v in nodes.items() if k.startswith("test.program_reporting.not_null_stg_merchants_business_type")
    )
    assert test["attached_node"] == "model.program_reporting.stg_merchants"


def test_a_failing_test_fails_its_model_naming_test_and_message(broken, caplog):
    _, where, _ = broken
    with caplog.at_level(logging.INFO), pytest.raises(AirflowFailException) as exc:
        dbt_models.settle("stg_merchants", where)
    message = str(exc.value)
    assert message.startswith("dbt: model stg_merchants built, but test not_null_stg_merchants_business_type fail")
    assert "Got 1 result, configured to fail if != 0" in message
    assert "relationships_stg_merchants_region" not in message  # a warning is no failure
    [record] = caplog.records
    log = record.getMessage()
    assert log.startswith("model stg_merchants: success in ")
    # every test's status and time, dbt's message where one failed or warned
    assert re.search(r"\n  fail +\d+\.\d\d s  test not_null_stg_merchants_business_type: Got 1 result", log)
    assert re.search(r"\n  warn +\d+\.\d\d s  test relationships_stg_merchants_region__region_code__ref_regions_", log)
    assert len(re.findall(r"\n  pass +\d+\.\d\d s  test ", log)) >= 9


def test_what_dbt_skipped_is_skipped_naming_the_failure_upstream(broken):
    _, where, _ = broken
    for model in ("int_merchant_versions", "kpi_program_daily"):
        with pytest.raises(AirflowSkipException) as exc:
            dbt_models.settle(model, where)
        assert str(exc.value) == (
            f"dbt skipped model {model}: what it reads failed: model stg_merchants built, but "
            "test not_null_stg_merchants_business_type fail: Got 1 result, configured to fail if != 0"
        )


def test_a_model_that_passed_with_a_warning_succeeds_and_logs_it(broken, caplog):
    _, where, _ = broken
    with caplog.at_level(logging.INFO):
        dbt_models.settle("stg_employment_reports", where)  # returns: the task succeeds
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert text.startswith("model stg_employment_reports: success in ")
    assert "\n10 tests (9 pass, 1 warn), " in text and text.count("\n  warn ") == 1
    assert "relationships_stg_employment_reports_merchant_id__merchant_id__ref_stg_merchants_: Got 1 result" in text


def test_a_clean_model_succeeds_with_its_times_and_a_seed_with_its_rows(broken, caplog):
    """(Seeds have no task of their own; dbt_results tells their night all the same.)"""
    _, where, _ = broken
    with caplog.at_level(logging.INFO):
        dbt_models.settle("stg_credit_events", where)
        dbt_models.settle("regions", where)
    model, seed = (r.getMessage() for r in caplog.records)
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert re.match(r"model stg_credit_events: success in \d+\.\d\d s \(adapter: OK\); dbt build of the night: ", model)
    assert re.search(r"\n9 tests \(8 pass, 1 skipped\), \d+\.\d\d s:\n  pass +\d+\.\d\d s  test ", model)
    # a singular test counts for every model it reads: this one also reads kpi_segment_daily, which dbt skipped
    assert re.search(r"\n  skipped +0\.00 s  test partial_load_guard\n", model)
    assert seed.startswith("seed regions: success in ") and "(adapter: CREATE 87, rows affected: 87)" in seed
    assert "3 tests (3 pass)" in seed and "test unique_regions_region_code" in seed


def test_no_results_or_a_model_not_built_is_skipped(broken, tmp_path):
    _, where, _ = broken
    with pytest.raises(AirflowSkipException, match="model_gone was not part of this run's dbt build"):
        dbt_models.settle("model_gone", where)
    with pytest.raises(AirflowSkipException, match="the dbt build left no results for this run .*does not exist"):
        dbt_models.settle("stg_merchants", tmp_path / "never-built")
    with pytest.raises(AirflowSkipException, match="the dbt build left no results for this run"):
        dbt_models.settle("stg_merchants", None)


def test_a_new_try_of_the_build_forgets_the_results_of_the_last(broken, tmp_path):
    """A try that stops before dbt runs a node (here: nothing landed) must not leave
    an earlier try's results to pass for its own."""
    import shutil

    _, where, _ = broken
    empty = Paths(drop=tmp_path / "drop", home=tmp_path / "home")
    stale = dbt_results.folder(empty.tmp, RUN_ID)
    shutil.copytree(where, stale)
    assert dbt_results.outcome(stale, "stg_merchants").state == "failed"
    with pytest.raises(build_mod.BuildFailed, match="no landed delivery"):
        build_mod.build(LAST_DS, RUN_ID, paths=empty)
    assert not stale.exists()
    assert dbt_results.outcome(stale, "stg_merchants").state == "no_results"
