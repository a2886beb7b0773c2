"""Write-audit-publish: only a validated, unchanged set is published; publishing
is an atomic swap that readers never wait for; a withheld run changes nothing."""

from __future__ import annotations

import json
import os
import stat

import duckdb
import pytest

from marts import mutate, write_audit
from program_reporting import gate
from program_reporting.publish import PublishError, audit_and_publish, publish
from test_gate_landed import land_all

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
