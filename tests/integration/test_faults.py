"""Fault injection: each stage of a nightly run is SIGKILLed in turn, then run again.

A two-day simulation (40 merchants): day 1 runs cleanly and is published. Day 2
is run stage by stage as the nightly DAG runs it (land, dbt build, stage audit,
validate, publish, report), each stage in its own process; at every kill point
the stage is killed (failpoints.py, or from outside for dbt), the state is
checked, and the stage is run again. Checked after every kill:

- current.duckdb is a complete published set: the previous one or the new one;
- every landed delivery satisfies delivered = loaded + quarantined + held, and
  every delivered CSV line is in exactly one place (raw, quarantine or held):
  nothing lost, nothing doubled;
- readers in other processes, reading current.duckdb all along, never fail and
  never see a mix;
- the set in current.duckdb has its report in reports/<run_id>/, naming it and
  its checksum, and no report says "published" for a set that was not;
- then the stage re-runs and succeeds, and at the end a plain re-run of the
  whole date, with a new run id, succeeds: no lock or temp file blocks it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from helpers import reliability_log

from program_reporting.core.settings import Paths
from program_reporting.reporting.verify import verify as verify_reports

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parents[1] / "helpers" / "fault_runner.py"
DAY1, DAY2 = "2020-06-02", "2020-06-03"

# (stage, failpoint, how to re-run): the matrix, in pipeline order
KILLS = [
    ("landing", "landing.write.before#2", "land"),
    ("landing", "landing.swap.after#1", "land"),
    ("dbt build", "dbt: first model created", "build"),
    ("validation", "gate.suites.after#1", "validate"),
    ("publishing", "publish.report_written#1", "publish"),  # the report fixed, the set not moved
    ("publishing", "publish.fsync_file.before#1", "publish"),
    ("publishing", "publish.fsync_dir.before#2", "publish"),  # the set in runs/, its report not in place
    ("publishing", "publish.fsync_dir.before#3", "publish"),  # swapped, not yet fsynced
    ("publishing", "publish.before_index#1", "publish"),  # swapped, the report not in the index
    ("report", "report.render_html.after#1", "report"),
    ("report", "report.index_entry.before#1", "report"),
]
reliability_log.expect("faults", [k[1] for k in KILLS] + ["plain re-run of the date"])
reliability_log.expect("concurrency", ["readers reopening", "reader holding"])

FINGERPRINT = """SELECT (SELECT min(run_id) FROM run_info), (SELECT count(*) FROM run_info),
  (SELECT count(*) FROM kpi_program_daily), (SELECT sum(enrolled_merchants) FROM kpi_program_daily),
  (SELECT count(*) FROM kpi_segment_daily), (SELECT count(*) FROM kpi_target_progress)"""


def _fingerprint(path: Path) -> tuple:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return tuple(con.execute(FINGERPRINT).fetchone())
    finally:
        con.close()


# --------------------------------------------------------------------------
# running stages

STAGE_CODE = {
    "validate": "from program_reporting.validation import gate\n"
    "assert gate.validate_landed(ds).passed\nassert gate.validate(run_id, ds).passed",
    "validate_marts": "from program_reporting.validation import gate\nassert gate.validate(run_id, ds).passed",
    "publish": "from program_reporting.publishing import publish\npublish.publish(run_id)",
    # a published run's report was written by publish; this is the report step of a withheld one
    "report": "from program_reporting.reporting import report\n"
    "try:\n"
    "    report.write_report(run_id, ds, [], published=False, reason='fault test')\n"
    "except report.ReportExists:\n"
    "    print('report exists')\n",
}


def _env(p: Paths, failpoint: str | None = None, marker: Path | None = None) -> dict:
    env = dict(
        os.environ,
        PROGRAM_REPORTING_DROP=str(p.drop),
        PROGRAM_REPORTING_HOME=str(p.home),
        PROGRAM_REPORTING_DUCKDB_THREADS="1",
    )
    env.pop("PROGRAM_REPORTING_FAILPOINT", None)
    if failpoint:
        env["PROGRAM_REPORTING_FAILPOINT"] = failpoint
        env["PROGRAM_REPORTING_FAILPOINT_MARKER"] = str(marker)
    return env


def _command(stage: str, ds: str, run_id: str) -> list[str]:
    if stage in ("land", "build", "audit"):
        return [sys.executable, str(RUNNER), stage, ds, run_id]
    prelude = (
        f"import sys\nsys.path.insert(0, {str(RUNNER.parent)!r})\nimport fault_runner\nfault_runner.instrument()\n"
        f"ds, run_id = {ds!r}, {run_id!r}\n"
    )
    return [sys.executable, "-c", prelude + STAGE_CODE[stage]]


def run(p: Paths, stage: str, ds: str, run_id: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        _command(stage, ds, run_id), env=_env(p), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    return proc


def ok(p: Paths, stage: str, ds: str, run_id: str) -> None:
    proc = run(p, stage, ds, run_id)
    assert proc.returncode == 0, f"{stage} {ds} {run_id} failed:\n{proc.stderr[-3000:]}"


def kill_at(p: Paths, stage: str, ds: str, run_id: str, failpoint: str, tmp: Path) -> None:
    """Run the stage with the failpoint armed; it must die by SIGKILL right there."""
    marker = tmp / f"marker-{failpoint.replace('#', '-')}"
    proc = subprocess.run(
        _command(stage, ds, run_id),
        env=_env(p, failpoint, marker),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, f"{failpoint}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert marker.exists(), f"{failpoint} was not reached"


def kill_dbt_mid_build(p: Paths, ds: str, run_id: str) -> None:
    """SIGKILL `dbt build` once its first model is created (from outside: dbt runs in the child)."""
    logfile = p.home / "warehouse" / "dbt_logs" / "dbt.log"
    start = logfile.stat().st_size if logfile.exists() else 0
    proc = subprocess.Popen(
        _command("build", ds, run_id), env=_env(p), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if logfile.exists() and logfile.stat().st_size > start:
                with open(logfile, "rb") as fh:
                    fh.seek(start)
                    if b"OK created" in fh.read():
                        break
            assert proc.poll() is None, "dbt build ended before a model was created"
            time.sleep(0.05)
        else:
            raise AssertionError("no model created within 300 s")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


# --------------------------------------------------------------------------
# invariants


def _count(con, files: list[Path], col: str) -> tuple[int, int]:
    if not files:
        return 0, 0
    listed = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    return tuple(
        con.execute(
            f"SELECT count(*), count(DISTINCT {col}) FROM read_parquet({listed}, union_by_name = true)"
        ).fetchone()
    )


def check_rows(p: Paths, delivered: dict) -> str:
    """Identity, and every delivered line in exactly one place; returns the figures."""
    from program_reporting.landing import land as landing

    con = duckdb.connect()
    figures = []
    try:
        records = landing.reconciliation(p)
        for r in records:
            src, ds = r["source"], r["ds"]
            assert r["delivered"] == r["loaded"] + r["quarantined"] + r["held"], r
            assert r["delivered"] == delivered[src][ds], (r, delivered[src][ds])
            raw = sorted((p.raw / src / f"ds={ds}").glob("*.parquet"))
            q = [f for f in [p.quarantine / src / f"ds={ds}" / "quarantine.parquet"] if f.exists()]
            h = [f for f in [p.held / src / f"ds={ds}" / "rows.parquet"] if f.exists()]
            n_raw, _ = _count(con, raw, "_line")
            n_q, _ = _count(con, q, "line")
            n_h, _ = _count(con, h, "_line")
            assert (n_raw, n_q, n_h) == (r["loaded"], r["quarantined"], r["held"]), (r, n_raw, n_q, n_h)
            lines = []
            for files, col in ((raw, "_line"), (q, "line"), (h, "_line")):
                if files:
                    listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
                    lines += [
                        x[0]
                        for x in con.execute(
                            f"SELECT {col} FROM read_parquet({listed}, union_by_name = true)"
                        ).fetchall()
                    ]
            assert len(lines) == len(set(lines)) == r["delivered"], f"{src} {ds}: a line lost or doubled"
        total = {k: sum(r[k] for r in records) for k in ("delivered", "loaded", "quarantined", "held")}
        figures.append(
            f"{len(records)} deliveries: {total['delivered']} = {total['loaded']} + "
            f"{total['quarantined']} + {total['held']}, each line once"
        )
    finally:
        con.close()
    return "; ".join(figures)


LEFTOVER_KINDS = [
    ("tmp/land-", "landing work folder"),
    ("tmp/release-", "release work folder"),
    ("tmp/audit-", "audit scratch"),
    ("published/runs/.", "publish staging folder"),
    ("published/.current-", "current.duckdb link"),
    ("reports/.", "report staging"),
    ("audit/", "audit candidate"),
]


def leftovers(p: Paths) -> str:
    found: dict[str, int] = {}
    for path in (
        list(p.home.glob("tmp/*"))
        + list(p.home.glob("published/runs/.*"))
        + list(p.home.glob("published/.current-*"))
        + list(p.home.glob("reports/.*staging*"))
        + list(p.home.glob("reports/.*.publishing"))
    ):
        rel = path.relative_to(p.home).as_posix()
        if rel in ("tmp/locks", "tmp/gates", "tmp/dbt_runs") or rel.endswith(".lock"):  # standing folders
            continue
        kind = (
            "publication report not in place"
            if rel.endswith(".publishing")
            else next((k for prefix, k in LEFTOVER_KINDS if rel.startswith(prefix)), rel)
        )
        found[kind] = found.get(kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(found.items())) or "nothing"


def check_reports(p: Paths, current: str) -> None:
    """The published set in current.duckdb has its report (in place, naming it and
    its checksum), and a report that says "published" belongs to a published set."""
    report = json.loads((p.reports / current / "report.json").read_text())
    manifest = json.loads((p.runs / current / "manifest.json").read_text())
    assert report["run_id"] == current and report["decision"] == "published", report["decision"]
    assert report["published_sha256"] == manifest["sha256"]
    for folder in p.reports.iterdir():
        if (folder / "report.json").exists() and not folder.name.startswith("."):
            if json.loads((folder / "report.json").read_text())["decision"] == "published":
                assert (p.runs / folder.name / "kpi.duckdb").exists(), f"{folder.name}: published, says its report"


def indexed(p: Paths) -> list[str]:
    return [json.loads(x)["run_id"] for x in (p.reports / "index.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------
# readers


def _reader(path: str, hold: bool, stop, out) -> None:
    reads, errors = [], []
    held = duckdb.connect(path, read_only=True) if hold else None
    while not stop.is_set():
        try:
            con = held or duckdb.connect(path, read_only=True)
            try:
                reads.append(tuple(con.execute(FINGERPRINT).fetchone()))
            finally:
                if not hold:
                    con.close()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(repr(exc))
        time.sleep(0.1)
    if held:
        held.close()
    out.put((hold, reads, errors))


# --------------------------------------------------------------------------
# the matrix


def test_kill_every_stage_then_rerun(tmp_path, reliability):
    from program_reporting.tools.simulate.simulator import simulate

    p = Paths(drop=tmp_path / "drop", home=tmp_path / "home")
    summary = simulate(start=DAY1, days=2, merchants=40, seed=7, drop=p.drop, progress=False)
    delivered = summary["rows"]

    # day 1, cleanly
    for stage in ("land", "build", "audit", "validate", "publish", "report"):
        ok(p, stage, DAY1, "d1")
    published = {"d1": _fingerprint(p.current_db)}
    assert published["d1"][0] == "d1"

    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    readers = [
        ctx.Process(target=_reader, args=(str(p.current_db), hold, stop, out), daemon=True)
        for hold in (False, False, True)
    ]
    for r in readers:
        r.start()
    try:
        _day2(p, tmp_path, reliability, delivered, published, stop, out, readers)
    finally:
        stop.set()
        for r in readers:
            r.join(timeout=30)
            if r.is_alive():
                r.kill()


def _day2(p, tmp_path, reliability, delivered, published, stop, out, readers):

    rows: dict[str, str] = {}
    state = {"current": "d1", "next": 0}
    kills_of_publish = 0

    def new_candidate() -> str:
        state["next"] += 1
        run_id = f"d2-{state['next']}"
        ok(p, "audit", DAY2, run_id)
        ok(p, "validate_marts", DAY2, run_id)
        return run_id

    def after_kill(failpoint: str) -> str:
        fp = _fingerprint(p.current_db)
        assert fp[0] in published or fp[0].startswith("d2-"), fp
        if fp[0] not in published:  # the new set became current: it must be the complete candidate
            published[fp[0]] = _fingerprint(p.runs / fp[0] / "kpi.duckdb")
        assert fp == published[fp[0]], f"{failpoint}: current.duckdb is not one complete published set"
        check_reports(p, fp[0])
        rows[failpoint] = check_rows(p, delivered)
        was = state["current"]
        state["current"] = fp[0]
        return "previous set (unchanged)" if fp[0] == was else "the new set (complete)"

    def record(stage, failpoint, after, rerun):
        reliability.record(
            "faults",
            failpoint,
            {
                "stage": stage,
                "failpoint": failpoint,
                "after_kill": after,
                "rerun": rerun,
                "rows": rows[failpoint],
                "leftovers": leftovers(p),
            },
        )

    run_id = None
    for stage, failpoint, _rerun_stage in KILLS:
        if stage == "landing":
            kill_at(p, "land", DAY2, "-", failpoint, tmp_path)
            after = after_kill(failpoint)
            ok(p, "land", DAY2, "-")
            rows[failpoint] += " (after the re-run: " + check_rows(p, delivered).split(":")[0] + ")"
            record(stage, failpoint, after, "land again: succeeded")
        elif stage == "dbt build":
            kill_dbt_mid_build(p, DAY2, "b1")
            after = after_kill(failpoint)
            ok(p, "build", DAY2, "b2")
            record(stage, failpoint, after, "dbt build again: succeeded")
        elif stage == "validation":
            state["next"] += 1
            run_id = f"d2-{state['next']}"
            ok(p, "audit", DAY2, run_id)
            kill_at(p, "validate", DAY2, run_id, failpoint, tmp_path)
            assert not (p.audit / run_id / "gate.json").exists(), "a verdict was written by a killed validation"
            after = after_kill(failpoint)
            ok(p, "validate", DAY2, run_id)
            record(stage, failpoint, after, "validate the same run again: succeeded (verdict written)")
        elif stage == "publishing":
            kills_of_publish += 1
            kill_at(p, "publish", DAY2, run_id, failpoint, tmp_path)
            after = after_kill(failpoint)
            if (p.reports / run_id).exists():  # check_reports: only once its set is in published/runs/
                after += "; its report in place" + ("" if run_id in indexed(p) else ", not yet in the index")
            elif (p.runs / run_id).exists():
                after += "; its report fixed, put in place by the next publish"
            elif (p.reports / f".{run_id}.publishing").exists():
                after += "; its report fixed, listed nowhere (removed by the next publish)"
            retry = run(p, "publish", DAY2, run_id)
            if retry.returncode == 0:
                state["current"] = run_id
                published[run_id] = _fingerprint(p.runs / run_id / "kpi.duckdb")
                how = "retry of the same run: published"
            else:
                why = retry.stderr.strip().splitlines()[-1].split(": ", 1)[-1]
                why = (
                    "no candidate set left"
                    if "no candidate set" in why
                    else ("already published" if "published before" in why else why[:80])
                )
                how = f"retry of the same run: refused ({why})"
            if state["current"] != run_id:
                fresh = new_candidate()
                ok(p, "publish", DAY2, fresh)
                published[fresh] = _fingerprint(p.runs / fresh / "kpi.duckdb")
                state["current"] = fresh
                how += "; a new run of the date: published"
            assert _fingerprint(p.current_db)[0] == state["current"]
            check_reports(p, state["current"])
            if (p.runs / run_id).exists():
                assert run_id in indexed(p), f"{failpoint}: published run {run_id} is not in the report index"
                how += "; its report in place and in the index"
            record(stage, failpoint, after, how)
            if kills_of_publish < sum(1 for k in KILLS if k[0] == "publishing"):
                run_id = new_candidate()  # the next kill needs a validated candidate
        elif stage == "report":
            report_run = f"report-{failpoint.split('.')[1]}"  # a run with no report yet
            kill_at(p, "report", DAY2, report_run, failpoint, tmp_path)
            after = after_kill(failpoint)
            retry = run(p, "report", DAY2, report_run)
            assert retry.returncode == 0, retry.stderr[-2000:]
            assert (p.reports / report_run / "report.html").exists()
            listed = indexed(p)
            how = (
                "write the report again: "
                + ("kept the report the killed run wrote" if "report exists" in retry.stdout else "written")
                + ("; listed in the index" if report_run in listed else "; NOT listed in reports/index")
            )
            record(stage, failpoint, after, how)
        reliability.passed("faults", failpoint)

    # a plain re-run of the whole date, new run id
    for stage in ("land", "build", "audit", "validate", "publish", "report"):
        ok(p, stage, DAY2, "d2-final")
    final = _fingerprint(p.current_db)
    published["d2-final"] = final
    assert final[0] == "d2-final"
    rows["plain re-run of the date"] = check_rows(p, delivered)
    reliability.record(
        "faults",
        "plain re-run of the date",
        {
            "stage": "whole nightly run",
            "failpoint": "(none: after all the kills above)",
            "after_kill": "-",
            "rerun": "land, build, audit, validate, publish, report: published",
            "rows": rows["plain re-run of the date"],
            "leftovers": leftovers(p),
        },
    )
    reliability.passed("faults", "plain re-run of the date")
    # every kill above left the reports verifiable: the index chained, each report's files as written
    verification = verify_reports(p.reports, p.runs)
    assert verification.ok, "\n".join(map(str, verification.problems))
    assert verification.report_folders == len(indexed(p)) and not verification.unchained

    time.sleep(0.5)
    stop.set()
    results = [out.get(timeout=120) for _ in readers]
    for r in readers:
        r.join(timeout=60)
    publishes = len([k for k in published if k != "d1"])
    for hold, reads, errors in results:
        assert errors == [], errors[:3]
        assert reads, "a reader never read"
        for fp in reads:
            assert fp[0] in published and fp == published[fp[0]], f"a read saw an incomplete or mixed set: {fp}"
        if hold:
            assert {fp[0] for fp in reads} == {"d1"}
    fresh_seen = {fp[0] for hold, reads, _ in results if not hold for fp in reads}
    assert len(fresh_seen) >= 2, fresh_seen
    reliability.record(
        "concurrency",
        "readers reopening",
        {
            "check": "2 reader processes reopening current.duckdb read-only every 100 ms for the whole of day 2",
            "readers": 2,
            "publishes": f"{publishes} completed, {kills_of_publish} killed mid-publish",
            "outcome": "0 failed reads; every read saw exactly one complete published set",
        },
        measured={"reads": sum(len(r[1]) for r in results if not r[0]), "sets_seen": sorted(fresh_seen)},
    )
    reliability.passed("concurrency", "readers reopening")
    reliability.record(
        "concurrency",
        "reader holding",
        {
            "check": "1 reader holding current.duckdb open from day 1 on",
            "readers": 1,
            "publishes": f"{publishes} completed, {kills_of_publish} killed mid-publish",
            "outcome": "0 failed reads; it kept reading its complete day-1 set, never blocked a publish",
        },
        measured={"reads": sum(len(r[1]) for r in results if r[0])},
    )
    reliability.passed("concurrency", "reader holding")
