"""Retention: exactly what the policy says goes, goes; published sets, reports,
the index and every other kept folder stay however old; a dry run removes
nothing; links are never followed; a path that cannot be removed never stops
the rest, nor fails the night."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from program_reporting.cli import main
from program_reporting.core.settings import Paths
from program_reporting.publishing import retention
from program_reporting.publishing.publish import publish_lock

NOW = time.time()
DAY = 86400


def _write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _age(path, days):
    """Set the modification time of `path` and everything below it `days` back."""
    stamp = NOW - days * DAY
    if path.is_dir() and not path.is_symlink():
        for below in sorted(path.rglob("*"), reverse=True):
            os.utime(below, (stamp, stamp), follow_symlinks=False)
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _snapshot(root):
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _kept_folders(p: Paths):
    """Everything retention must never touch, each 1,000 days old."""
    files = [
        p.current_db,
        p.runs / "old-published" / "kpi.duckdb",
        p.runs / "old-published" / "manifest.json",
        p.runs / "old-published-2" / "kpi.duckdb",
        p.reports / "index.html",
        p.reports / "index.jsonl",
        p.reports / "old-withheld" / "report.json",
        p.reports / "old-withheld" / "report.html",
        p.reports / "old-unfinished-other" / "report.json",
        p.raw / "merchants" / "ds=2020-01-01" / "part.parquet",
        p.restricted / "merchants" / "ds=2020-01-01" / "part.parquet",
        p.quarantine / "merchants" / "ds=2020-01-01" / "rows.parquet",
        p.held / "credit_events" / "ds=2020-01-01" / "part.parquet",
        p.home / "landing_index" / "merchants.parquet",
        p.warehouse_db,
        p.exports / "kpi_brief.html",
        p.home / "alerts.log",
        p.drop / "merchants" / "ds=2020-01-01" / "_control.json",
    ]
    for f in files:
        _write(f)
    for folder in (p.published, p.reports, p.raw, p.restricted, p.quarantine, p.held, p.exports, p.drop):
        _age(folder, 1000)
    _age(p.home / "landing_index", 1000)
    _age(p.warehouse_db.parent, 1000)
    _age(p.home / "alerts.log", 1000)
    return files


@pytest.fixture
def home(env_paths, monkeypatch):
    """A home with every category old and young, and every kept folder old."""
    for name in retention.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.delenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", raising=False)
    p = env_paths
    kept = _kept_folders(p)
    # audit sets: withheld (has a report, not published), published (left behind), unfinished (no report)
    for run, days in (("old-withheld", 40), ("young-withheld", 5), ("old-published", 40), ("old-unfinished", 400)):
        _write(p.audit / run / "kpi.duckdb", "set")
        _write(p.audit / run / "gate.json", "{}")
        _age(p.audit / run, days)
    _write(p.reports / "young-withheld" / "report.json")
    _age(p.reports, 1000)
    # a withheld run whose set is old but whose verdict was written yesterday: young
    _write(p.audit / "retried-withheld" / "kpi.duckdb")
    _age(p.audit / "retried-withheld", 40)
    _write(p.audit / "retried-withheld" / "gate.json")
    _age(p.audit / "retried-withheld" / "gate.json", 1)
    _write(p.reports / "retried-withheld" / "report.json")
    # tmp: work folders, the standing spill, gate and lock folders
    _write(p.tmp / "land-merchants-0123456789ab" / "rows.parquet", "r" * 100)
    _age(p.tmp / "land-merchants-0123456789ab", 3)
    _write(p.tmp / "duckdb" / "duckdb_temp_storage-0.tmp", "s" * 1000)
    _age(p.tmp / "duckdb" / "duckdb_temp_storage-0.tmp", 2)
    _write(p.tmp / "duckdb" / "duckdb_temp_storage-1.tmp")  # a run spilling now
    _write(p.tmp / "locks" / "merchants.lock")
    _age(p.tmp / "locks", 30)
    _write(p.tmp / "gates" / "old-run" / "landed.pickle")
    _age(p.tmp / "gates", 2)
    _write(p.tmp / "dbt_runs" / "old-run" / "run_results.json")  # a build's results for its status tasks
    _age(p.tmp / "dbt_runs", 2)
    _write(p.tmp / "audit-run-123.duckdb")
    _age(p.tmp / "audit-run-123.duckdb", 13 / 24)  # 13 hours: under the default 24
    _write(p.tmp / "audit-run-456.duckdb")
    _age(p.tmp / "audit-run-456.duckdb", 25 / 24)
    os.utime(p.tmp / "duckdb", (NOW - 2 * DAY,) * 2)  # the folder itself is old, one file in it young
    # Airflow's logs (default AIRFLOW_HOME = <home>/airflow)
    logs = p.home / "airflow" / "logs"
    _write(logs / "dag_id=nightly" / "run_id=old" / "task_id=plan" / "attempt=1.log")
    _age(logs / "dag_id=nightly" / "run_id=old", 31)
    _write(logs / "dag_id=nightly" / "run_id=young" / "task_id=plan" / "attempt=1.log")
    _write(logs / "program-reporting-run" / "2020-06-01.log")
    _age(logs / "program-reporting-run", 60)
    _write(p.home / "airflow" / "airflow.db")
    _age(p.home / "airflow" / "airflow.db", 1000)
    # landing failures
    failures = p.landing_failures / "merchants"
    _write(failures / "ds=2020-06-01" / "20200602T010000000000Z.json")
    _age(failures / "ds=2020-06-01", 100)
    _write(failures / "ds=2020-06-02" / "20200603T010000000000Z.json")
    _age(failures / "ds=2020-06-02" / "20200603T010000000000Z.json", 100)
    _write(failures / "ds=2020-06-02" / "20200603T020000000000Z.json")
    _age(failures / "ds=2020-06-02" / "20200603T020000000000Z.json", 10)
    return p, kept


EXPECTED = {
    ("audit-withheld", "audit/old-withheld"),
    ("audit-published", "audit/old-published"),
    ("tmp", "tmp/land-merchants-0123456789ab"),
    ("tmp", "tmp/duckdb/duckdb_temp_storage-0.tmp"),
    ("tmp", "tmp/gates/old-run"),
    ("tmp", "tmp/dbt_runs/old-run"),
    ("tmp", "tmp/audit-run-456.duckdb"),
    ("airflow-log", "airflow/logs/dag_id=nightly/run_id=old"),
    ("airflow-log", "airflow/logs/program-reporting-run"),
    ("landing-failure", "landing_failures/merchants/ds=2020-06-01"),
    ("landing-failure", "landing_failures/merchants/ds=2020-06-02/20200603T010000000000Z.json"),
}


def _found(plan, p):
    return {(e.category, str(e.path.relative_to(p.home))) for e in plan.entries}


def test_exactly_the_old_parts_go_and_every_kept_folder_stays(home):
    p, kept = home
    logs = p.home / "airflow" / "logs"
    before = _snapshot(p.home)
    plan = retention.find(p, logs)
    assert _found(plan, p) == EXPECTED
    assert plan.kept == ["audit/old-unfinished: no report yet (a run in progress, or staged by hand and not published)"]
    by_path = {str(e.path.relative_to(p.home)): e for e in plan.entries}
    assert by_path["tmp/land-merchants-0123456789ab"].size_bytes == 100
    assert round(by_path["audit/old-withheld"].age_seconds / DAY) == 40

    _, done = retention.apply(p, logs)
    assert {(e.category, str(e.path.relative_to(p.home))) for e in done} == EXPECTED
    assert not [e for e in done if e.error]
    gone = {rel for _, rel in EXPECTED}
    after = _snapshot(p.home)
    expected_after = {x for x in before if not any(x == g or x.startswith(g + "/") for g in gone)}
    # the publish lock (audit sets are removed holding it) is the one file added
    assert after - {"published/.publish.lock"} == expected_after
    for f in kept:
        assert f.exists(), f
    # the standing folders stay, emptied of their old files; a night's young files stay
    for standing in ("duckdb", "gates", "locks", "dbt_runs"):
        assert (p.tmp / standing).is_dir()
    assert (p.tmp / "locks" / "merchants.lock").exists()
    assert (p.tmp / "duckdb" / "duckdb_temp_storage-1.tmp").exists()
    assert (p.audit / "old-unfinished" / "kpi.duckdb").exists()
    # a second pass finds nothing more
    assert retention.find(p, logs).entries == []


def test_dry_run_lists_everything_and_removes_nothing(home, capsys):
    p, _ = home
    before = {(x, (p.home / x).lstat().st_mtime_ns) for x in _snapshot(p.home)}
    assert main(["retention", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert {(x, (p.home / x).lstat().st_mtime_ns) for x in _snapshot(p.home)} == before
    listed = [parts for parts in (line.split() for line in out if line.startswith("would remove ")) if len(parts) == 8]
    # would remove <category> <age> <unit> <size> <unit> <path>
    assert {(parts[2], parts[7]) for parts in listed} == EXPECTED
    assert any(
        parts[2] == "tmp" and parts[7] == "tmp/land-merchants-0123456789ab" and parts[5:7] == ["100", "B"]
        for parts in listed
    )
    assert out[0].startswith("retention policy: audit sets 30 d, tmp 24 h, Airflow logs 30 d, landing failures 90 d")
    assert out[-1].startswith(f"would remove {len(EXPECTED)} path(s), ")
    assert any(line.startswith("kept") and "audit/old-unfinished" in line for line in out)


def test_the_command_removes_and_lists_what_it_removed(home, capsys):
    p, _ = home
    assert main(["retention"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert {
        (parts[1], parts[6])
        for parts in (line.split() for line in out if line.startswith("removed "))
        if len(parts) == 7
    } == EXPECTED
    assert out[-1].startswith(f"removed {len(EXPECTED)} path(s), ")
    assert not (p.audit / "old-withheld").exists() and (p.audit / "young-withheld").exists()


def test_settings_never_and_thresholds(home, monkeypatch):
    p, _ = home
    logs = p.home / "airflow" / "logs"
    monkeypatch.setenv("PROGRAM_REPORTING_RETAIN_AUDIT_DAYS", "never")
    monkeypatch.setenv("PROGRAM_REPORTING_RETAIN_AIRFLOW_LOG_DAYS", "45")
    monkeypatch.setenv("PROGRAM_REPORTING_RETAIN_LANDING_FAILURE_DAYS", "5")
    monkeypatch.setenv("PROGRAM_REPORTING_RETAIN_TMP_HOURS", "12")
    found = _found(retention.find(p, logs), p)
    assert not [c for c, _ in found if c.startswith("audit")]
    assert ("airflow-log", "airflow/logs/program-reporting-run") in found  # 60 days
    assert ("airflow-log", "airflow/logs/dag_id=nightly/run_id=old") not in found  # 31 days
    assert ("landing-failure", "landing_failures/merchants/ds=2020-06-02/20200603T020000000000Z.json") in found
    assert ("tmp", "tmp/audit-run-123.duckdb") in found  # 13 hours
    monkeypatch.setenv("PROGRAM_REPORTING_RETAIN_AUDIT_DAYS", "0")
    found = _found(retention.find(p, logs), p)
    # even at 0 days a run with no report keeps its set
    assert {r for c, r in found if c.startswith("audit")} == {
        "audit/old-withheld",
        "audit/young-withheld",
        "audit/retried-withheld",
        "audit/old-published",
    }


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("PROGRAM_REPORTING_RETAIN_TMP_HOURS", "2", "below 12 hours"),
        ("PROGRAM_REPORTING_RETAIN_AUDIT_DAYS", "-1", "below 0"),
        ("PROGRAM_REPORTING_RETAIN_AIRFLOW_LOG_DAYS", "a month", "not a number"),
        ("PROGRAM_REPORTING_RETAIN_LANDING_FAILURE_DAYS", "nan", "below 0"),
    ],
)
def test_a_wrong_setting_is_refused_by_name_and_nothing_goes(home, monkeypatch, capsys, name, value, message):
    p, _ = home
    monkeypatch.setenv(name, value)
    before = _snapshot(p.home)
    assert main(["retention"]) == 2
    err = capsys.readouterr().err
    assert name in err and message in err
    assert _snapshot(p.home) == before


def test_links_are_never_followed(env_paths, tmp_path, monkeypatch):
    p = env_paths
    for name in retention.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    outside = tmp_path / "outside"
    _write(outside / "precious.txt")
    _age(outside, 1000)
    _write(p.current_db)
    _age(p.published, 1000)
    p.tmp.mkdir(parents=True)
    # an old link to a folder outside the home, one to the published set, and one inside an old work folder
    (p.tmp / "to-outside").symlink_to(outside, target_is_directory=True)
    (p.tmp / "to-current").symlink_to(p.current_db)
    _write(p.tmp / "work-1" / "part.parquet")
    (p.tmp / "work-1" / "to-outside").symlink_to(outside, target_is_directory=True)
    # a young link to an old folder: the link's own age counts, and the folder is not entered
    (p.tmp / "young-link").symlink_to(outside, target_is_directory=True)
    for link in ("to-outside", "to-current", "work-1"):
        _age(p.tmp / link, 10)
    # an audit set that is a link, and a category folder that is a link
    p.audit.mkdir()
    _write(outside / "audit-set" / "kpi.duckdb")
    _age(outside, 1000)
    (p.audit / "linked-run").symlink_to(outside / "audit-set", target_is_directory=True)
    _write(p.reports / "linked-run" / "report.json")
    p.landing_failures.symlink_to(outside, target_is_directory=True)

    plan = retention.find(p)
    assert _found(plan, p) == {("tmp", "tmp/to-outside"), ("tmp", "tmp/to-current"), ("tmp", "tmp/work-1")}
    assert any("landing-failure skipped" in k and "symbolic link" in k for k in plan.kept)
    retention.remove(plan, p)
    assert not os.path.lexists(p.tmp / "to-outside") and not os.path.lexists(p.tmp / "work-1")
    assert (p.tmp / "young-link").is_symlink()
    assert (outside / "precious.txt").exists() and (outside / "audit-set" / "kpi.duckdb").exists()
    assert p.current_db.exists()
    assert (p.audit / "linked-run").is_symlink()


@pytest.mark.parametrize("where", ["home", "reports", "published", "drop", "parent"])
def test_an_airflow_log_folder_overlapping_kept_data_is_skipped(env_paths, monkeypatch, where):
    p = env_paths
    for name in retention.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    kept = _kept_folders(p)
    logs = {
        "home": p.home,
        "reports": p.reports,
        "published": p.runs,
        "drop": p.drop / "merchants",
        "parent": p.home.parent,
    }[where]
    plan = retention.find(p, logs)
    assert not [e for e in plan.entries if e.category == "airflow-log"]
    assert any(k.startswith("airflow-log skipped") for k in plan.kept)
    retention.remove(plan, p, logs)
    assert all(f.exists() for f in kept)


def test_a_path_swapped_for_a_link_is_not_removed_and_the_rest_is(home, tmp_path):
    """Between finding and removing, a folder becomes a link to elsewhere: the
    path through it is refused (named), everything else goes."""
    p, _ = home
    logs = p.home / "airflow" / "logs"
    plan = retention.find(p, logs)
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "20200603T010000000000Z.json", "not ours")
    ds = p.landing_failures / "merchants" / "ds=2020-06-02"
    ds.rename(tmp_path / "moved")
    ds.symlink_to(elsewhere, target_is_directory=True)
    done = retention.remove(plan, p, logs)
    failed = [e for e in done if e.error]
    assert [str(e.path.relative_to(p.home)) for e in failed] == [
        "landing_failures/merchants/ds=2020-06-02/20200603T010000000000Z.json"
    ]
    assert "outside" in failed[0].error
    assert (elsewhere / "20200603T010000000000Z.json").read_text() == "not ours"
    assert not (p.audit / "old-withheld").exists() and not (p.tmp / "land-merchants-0123456789ab").exists()


def test_audit_sets_wait_for_a_running_publish(home):
    p, _ = home
    plan = retention.find(p)
    holding, released = threading.Event(), threading.Event()

    def publisher():
        with publish_lock(p):
            holding.set()
            released.wait(10)

    thread = threading.Thread(target=publisher)
    thread.start()
    holding.wait(10)
    remover = threading.Thread(target=retention.remove, args=(plan, p))
    remover.start()
    remover.join(0.5)
    assert remover.is_alive() and (p.audit / "old-withheld").exists()
    released.set()
    remover.join(10)
    thread.join(10)
    assert not (p.audit / "old-withheld").exists()


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_nightly_task_never_fails_the_night(home, monkeypatch):
    p, _ = home
    # Airflow's import makes $AIRFLOW_HOME/logs: let that be the test home's default one
    monkeypatch.setenv("AIRFLOW_HOME", str(p.home / "airflow"))
    from program_reporting.orchestration import nightly

    # Airflow's logging replaces pytest's capture: listen on the task's logger itself
    task_log = _Lines()
    logger = logging.getLogger(nightly.__name__)
    monkeypatch.setattr(logger, "handlers", [*logger.handlers, task_log])
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "level", logging.INFO)

    monkeypatch.setenv("PROGRAM_REPORTING_RETAIN_TMP_HOURS", "1")
    assert nightly.retention() == {"removed": None, "bytes": None, "failed": None, "error": True}
    assert (p.audit / "old-withheld").exists()
    monkeypatch.delenv("PROGRAM_REPORTING_RETAIN_TMP_HOURS")

    real = retention.Path.unlink

    def refuse(self, *args, **kwargs):
        if self.name == "audit-run-456.duckdb":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(retention.Path, "unlink", refuse)
    summary = nightly.retention()
    assert summary["failed"] == 1 and summary["removed"] == len(EXPECTED) - 1 and not summary["error"]
    assert (p.tmp / "audit-run-456.duckdb").exists()
    assert not (p.audit / "old-withheld").exists()
    # what it removed, and what it could not, is in the task's log
    logged = "\n".join(task_log.lines)
    assert "below 12 hours" in logged and "retention did not finish" in logged
    assert "tmp/audit-run-456.duckdb  NOT REMOVED: PermissionError" in logged
    assert "audit/old-withheld" in logged


def test_help_explains_the_policy_and_every_setting(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["retention", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in retention.SETTINGS:
        assert name in out
    assert "--dry-run" in out and "never removed" in out.lower() and "published/" in out
