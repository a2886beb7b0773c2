"""Write-audit-publish: only a validated, unchanged set is published; publishing
is an atomic swap that readers never wait for; a withheld run changes nothing."""

from __future__ import annotations

import json
import os
import stat

import duckdb
import pytest
from helpers.landed import land_all
from helpers.marts import mutate, write_audit

from program_reporting.publishing.publish import publish
from program_reporting.publishing.wap import audit_and_publish
from program_reporting.validation import gate
from program_reporting.validation.candidate import PublishError

DS = "2020-06-05"


def _run_id_of(db) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT run_id FROM run_info").fetchone()[0]
    finally:
        con.close()


def test_clean_set_publishes_read_only_and_becomes_current(env_paths):
    write_audit(env_paths, "r1", DS)
    assert gate.validate("r1", DS, env_paths).passed
    published = publish("r1", env_paths)
    assert published == env_paths.runs / "r1" / "kpi.duckdb"
    assert stat.S_IMODE(published.stat().st_mode) == 0o444
    assert os.path.samefile(published, env_paths.current_db)
    assert not list(env_paths.published.rglob("*.wal")) and not list(env_paths.published.glob("*.tmp"))
    assert not (env_paths.audit / "r1").exists()
    manifest = json.loads((env_paths.runs / "r1" / "manifest.json").read_text())
    assert manifest["run_id"] == "r1" and manifest["ds"] == DS and len(manifest["sha256"]) == 64
    assert _run_id_of(env_paths.current_db) == "r1"
    # a reader of the published set never leaves a write-ahead log behind
    assert not list(env_paths.published.rglob("*.wal"))


def test_publish_refuses_without_a_passing_verdict(env_paths):
    write_audit(env_paths, "r1", DS)
    with pytest.raises(PublishError, match="no gate verdict"):
        publish("r1", env_paths)
    db = env_paths.audit / "r1" / "kpi.duckdb"
    mutate(db, "UPDATE kpi_program_daily SET drawn_to_date = 0")
    assert not gate.validate("r1", DS, env_paths).passed
    with pytest.raises(PublishError, match="did not pass the gate"):
        publish("r1", env_paths)
    assert not env_paths.current_db.exists() and not (env_paths.runs / "r1").exists()
    assert db.exists()  # the withheld candidate stays for investigation


def test_publish_refuses_a_set_changed_after_validation(env_paths):
    db = write_audit(env_paths, "r1", DS)
    assert gate.validate("r1", DS, env_paths).passed
    mutate(db, "UPDATE kpi_segment_daily SET jobs_added = jobs_added + 1")
    with pytest.raises(PublishError, match="changed since it was validated"):
        publish("r1", env_paths)
    assert not env_paths.current_db.exists()


def test_a_run_publishes_once(env_paths):
    write_audit(env_paths, "r1", DS)
    gate.validate("r1", DS, env_paths)
    publish("r1", env_paths)
    write_audit(env_paths, "r1", DS)
    gate.validate("r1", DS, env_paths)
    with pytest.raises(PublishError, match="published before"):
        publish("r1", env_paths)


def test_withheld_run_keeps_previous_set_current_and_says_why(env_paths):
    land_all(env_paths.home, DS)
    write_audit(env_paths, "r1", DS)
    first = audit_and_publish("r1", DS, airflow_run_id="scheduled__2020-06-05", paths=env_paths)
    assert first.published, first.reason

    reader = duckdb.connect(str(env_paths.current_db), read_only=True)  # a BI tool holding it open
    db = write_audit(env_paths, "r2", DS, bump=1)
    mutate(db, "UPDATE kpi_segment_daily SET credit_limit_total = credit_limit_total + 5 WHERE region = 'US-NY'")
    second = audit_and_publish("r2", DS, paths=env_paths)
    assert not second.published
    assert "sd_segments_sum_to_program" in second.reason
    assert reader.execute("SELECT run_id FROM run_info").fetchone()[0] == "r1"
    reader.close()
    assert _run_id_of(env_paths.current_db) == "r1"
    assert not (env_paths.runs / "r2").exists()

    report = json.loads((env_paths.reports / "r2" / "report.json").read_text())
    assert report["decision"] == "withheld" and "sd_segments_sum_to_program" in report["reason"]
    alerts = [json.loads(line) for line in (env_paths.home / "alerts.log").read_text().splitlines()]
    assert [a["event"] for a in alerts] == ["publication_withheld"]
    assert alerts[0]["report_path"].endswith("reports/r2/report.html")


def test_gate_that_cannot_run_withholds_and_alerts(env_paths):
    outcome = audit_and_publish("ghost", DS, paths=env_paths, landed=False)
    assert not outcome.published and "no candidate set" in outcome.reason
    assert (env_paths.reports / "ghost" / "report.json").exists()
    assert "publication_withheld" in (env_paths.home / "alerts.log").read_text()


def test_publish_cli_exit_status(env_paths, capsys):
    from program_reporting.cli import main

    land_all(env_paths.home, DS)
    write_audit(env_paths, "r1", DS)
    assert main(["publish", "--run-id", "r1", "--ds", DS]) == 0
    assert "published run r1" in capsys.readouterr().out.splitlines()[-1]
    db = write_audit(env_paths, "r2", DS)
    mutate(db, "DELETE FROM kpi_segment_daily WHERE region = 'CN-ZJ'")
    assert main(["publish", "--run-id", "r2", "--ds", DS]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("withheld run r2") and "sd_segments_sum_to_program" in last


def test_retry_after_a_kill_between_runs_and_current_finishes_the_swap(env_paths):
    write_audit(env_paths, "r1", DS)
    gate.validate("r1", DS, env_paths)
    publish("r1", env_paths)
    write_audit(env_paths, "r2", DS)
    gate.validate("r2", DS, env_paths)
    publish("r2", env_paths)
    # as if the publish of r2 was killed after runs/r2 was complete, before the swap
    env_paths.current_db.unlink()
    os.link(env_paths.runs / "r1" / "kpi.duckdb", env_paths.current_db)
    assert publish("r2", env_paths) == env_paths.runs / "r2" / "kpi.duckdb"
    assert os.path.samefile(env_paths.current_db, env_paths.runs / "r2" / "kpi.duckdb")
    # a retry of an older run never rolls current back
    with pytest.raises(PublishError):
        publish("r1", env_paths)
    assert os.path.samefile(env_paths.current_db, env_paths.runs / "r2" / "kpi.duckdb")


# --------------------------------------------------------------------------- a published set always has its report


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _index(p) -> dict:
    index = p.reports / "index.jsonl"
    return {e["run_id"]: e for e in map(json.loads, index.read_text().splitlines())} if index.exists() else {}


def test_published_set_comes_with_its_report_and_the_manifest_names_it(env_paths):
    write_audit(env_paths, "r1", DS)
    outcome = audit_and_publish("r1", DS, airflow_run_id="manual__x", paths=env_paths, landed=False)
    assert outcome.published, outcome.reason
    published = env_paths.runs / "r1" / "kpi.duckdb"
    manifest = json.loads((env_paths.runs / "r1" / "manifest.json").read_text())
    report = json.loads((env_paths.reports / "r1" / "report.json").read_text())
    assert outcome.report_path == env_paths.reports / "r1" / "report.html"
    assert report["run_id"] == "r1" and report["decision"] == "published"
    assert report["published_path"] == "published/runs/r1/kpi.duckdb"
    assert report["published_sha256"] == manifest["sha256"] == _sha256(published)
    assert f'<code id="published-sha256">{manifest["sha256"]}</code>' in outcome.report_path.read_text()
    assert report["reason"] == outcome.reason == "every critical check passed"
    assert [g["stage"] for g in report["gates"]] == ["marts"] and report["summary"]["checks"] > 50
    assert report["airflow_run_id"] == "manual__x"
    # the set's manifest names the report it was published with, and so does the index
    entry = _index(env_paths)["r1"]
    for name in ("report.json", "report.html"):
        key = name.replace(".", "_") + "_sha256"
        assert manifest["report"][key] == entry[key] == _sha256(env_paths.reports / "r1" / name)
    assert manifest["report"]["path"] == "reports/r1"
    assert not list(env_paths.reports.glob(".*publishing")) and not list(env_paths.reports.glob(".*staging*"))


def test_report_that_cannot_be_written_publishes_nothing(env_paths, monkeypatch, capsys):
    from program_reporting.cli import main

    land_all(env_paths.home, DS)
    write_audit(env_paths, "r1", DS)
    assert audit_and_publish("r1", DS, paths=env_paths, landed=False).published
    before = _sha256(env_paths.current_db)

    # the report is complete but the step fails before the set moves (an I/O error)
    write_audit(env_paths, "r2", DS, bump=1)
    monkeypatch.setenv("PROGRAM_REPORTING_FAILPOINT", "publish.report_written")
    monkeypatch.setenv("PROGRAM_REPORTING_FAILPOINT_ACTION", "error")
    assert main(["publish", "--run-id", "r2", "--ds", DS, "--skip-landed"]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("withheld run r2") and "the report of run r2 could not be written" in last
    assert "nothing was published" in last and "injected I/O error" in last
    assert _run_id_of(env_paths.current_db) == "r1" and _sha256(env_paths.current_db) == before
    assert not (env_paths.runs / "r2").exists()
    assert (env_paths.audit / "r2" / "kpi.duckdb").exists()  # withheld: the candidate stays for investigation
    assert not list(env_paths.reports.glob(".*publishing"))
    # the run still gets its report: withheld, saying why, and indexed
    report = json.loads((env_paths.reports / "r2" / "report.json").read_text())
    assert report["decision"] == "withheld" and report["published_sha256"] is None
    assert "the report of run r2 could not be written" in report["reason"]
    assert _index(env_paths)["r2"]["decision"] == "withheld"
    alerts = [json.loads(line) for line in (env_paths.home / "alerts.log").read_text().splitlines()]
    assert alerts[-1]["event"] == "publication_withheld"

    # Publishing the run anyway is refused before anything moves: its withheld
    # report can never be rewritten, so the set could never have its report.
    monkeypatch.delenv("PROGRAM_REPORTING_FAILPOINT")
    with pytest.raises(PublishError, match="r2 has a report already"):
        publish("r2", env_paths)
    assert _run_id_of(env_paths.current_db) == "r1" and not (env_paths.runs / "r2").exists()
    assert json.loads((env_paths.reports / "r2" / "report.json").read_text())["decision"] == "withheld"


def test_index_failure_after_the_swap_leaves_the_run_published_and_the_next_report_indexes_it(env_paths):
    from program_reporting.reporting.report import write_report

    write_audit(env_paths, "r1", DS)
    assert gate.validate("r1", DS, env_paths).passed
    env_paths.reports.mkdir(parents=True)
    (env_paths.reports / "index.jsonl").mkdir()  # the index cannot be appended to
    published = publish("r1", env_paths)
    assert os.path.samefile(env_paths.current_db, published)
    report = json.loads((env_paths.reports / "r1" / "report.json").read_text())
    assert report["decision"] == "published" and report["published_sha256"] == _sha256(published)
    (env_paths.reports / "index.jsonl").rmdir()
    assert _index(env_paths) == {}
    write_report("r2", DS, [], published=False, reason="a later withheld run", paths=env_paths)
    assert list(_index(env_paths)) == ["r1", "r2"]
    assert 'id="run-r1"' in (env_paths.reports / "index.html").read_text()


def test_publish_recovers_the_report_of_a_publication_killed_half_way(env_paths):
    """The states a kill leaves (tests/integration/test_faults.py kills for real): a fixed
    report whose set never moved is removed; one whose set reached
    published/runs/ is put in place before the set becomes current."""
    from program_reporting.reporting.report import write_publication_report

    for run_id in ("r1", "r2"):
        write_audit(env_paths, run_id, DS)
        assert gate.validate(run_id, DS, env_paths).passed
    # r1: killed right after its report was fixed
    write_publication_report(
        "r1", DS, [], "every critical check passed", None, env_paths.runs / "r1" / "kpi.duckdb", "0" * 64, env_paths
    )
    assert (env_paths.reports / ".r1.publishing" / "report.json").exists()
    assert not (env_paths.reports / "r1").exists()
    publish("r2", env_paths)
    assert not (env_paths.reports / ".r1.publishing").exists() and not (env_paths.reports / "r1").exists()
    assert (env_paths.audit / "r1" / "kpi.duckdb").exists()
    # r1 again, killed after its set reached published/runs/, before its report was in place
    publish("r1", env_paths)
    os.rename(env_paths.reports / "r1", env_paths.reports / ".r1.publishing")
    env_paths.current_db.unlink()
    os.link(env_paths.runs / "r2" / "kpi.duckdb", env_paths.current_db)
    assert publish("r1", env_paths) == env_paths.runs / "r1" / "kpi.duckdb"  # the retry finishes it
    assert os.path.samefile(env_paths.current_db, env_paths.runs / "r1" / "kpi.duckdb")
    assert json.loads((env_paths.reports / "r1" / "report.json").read_text())["run_id"] == "r1"
    assert not (env_paths.reports / ".r1.publishing").exists()
    assert set(_index(env_paths)) == {"r1", "r2"}
