"""Readers in other processes query published/current.duckdb read-only in a loop
while several sets are published: every read succeeds, sees exactly one
complete run, and no publish waits for them."""

from __future__ import annotations

import multiprocessing as mp
import time

import duckdb
from helpers.marts import write_audit

from program_reporting.publishing.publish import publish
from program_reporting.validation import gate

DS = "2020-06-05"
RUNS = [f"r{i}" for i in range(6)]

# What identifies a set's contents, computed the same way for every read.
FINGERPRINT = """SELECT
  (SELECT run_id FROM run_info),
  (SELECT count(*) FROM run_info),
  (SELECT sum(enrolled_merchants) FROM kpi_program_daily),
  (SELECT sum(enrolled_merchants) FROM kpi_segment_daily),
  (SELECT count(*) FROM kpi_segment_daily),
  (SELECT count(*) FROM kpi_target_progress)"""


def _fingerprint(con) -> tuple:
    return tuple(con.execute(FINGERPRINT).fetchone())


def _reader(path: str, hold: bool, stop, out) -> None:
    reads, errors = [], []
    con = duckdb.connect(path, read_only=True) if hold else None
    while not stop.is_set():
        started = time.monotonic()
        try:
            c = con or duckdb.connect(path, read_only=True)
            try:
                fp = _fingerprint(c)
            finally:
                if not hold:
                    c.close()
            reads.append((fp, time.monotonic() - started))
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the test
            errors.append(repr(exc))
        time.sleep(0.005)
    if con:
        con.close()
    out.put((hold, reads, errors))


def test_readers_never_block_and_never_see_a_mix(env_paths):
    # Candidate sets of six runs, validated up front (different contents per run).
    for i, run_id in enumerate(RUNS):
        write_audit(env_paths, run_id, DS, bump=i)
        assert gate.validate(run_id, DS, env_paths).passed, run_id
        if i == 0:
            publish(run_id, env_paths)
    expected = {}
    for run_id in RUNS[1:]:
        con = duckdb.connect(str(env_paths.audit / run_id / "kpi.duckdb"), read_only=True)
        expected[run_id] = _fingerprint(con)
        con.close()
    con = duckdb.connect(str(env_paths.runs / "r0" / "kpi.duckdb"), read_only=True)
    expected["r0"] = _fingerprint(con)
    con.close()

    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    readers = [
        ctx.Process(target=_reader, args=(str(env_paths.current_db), hold, stop, out))
        for hold in (False, False, False, True)
    ]
    for r in readers:
        r.start()
    time.sleep(5.0)  # let every reader get going (spawned interpreters import duckdb)

    durations = []
    for run_id in RUNS[1:]:
        started = time.monotonic()
        publish(run_id, env_paths)
        durations.append(time.monotonic() - started)
        time.sleep(0.6)
    time.sleep(0.5)
    stop.set()
    results = [out.get(timeout=60) for _ in readers]
    for r in readers:
        r.join(timeout=30)
        assert r.exitcode == 0

    seen = set()
    for hold, reads, errors in results:
        assert errors == [], errors
        assert len(reads) > 5
        for fp, _latency in reads:
            run_id = fp[0]
            assert fp == expected[run_id], f"a read mixed runs or saw a partial set: {fp}"
            seen.add(run_id)
        if hold:
            # a reader holding the old file open keeps its complete set
            assert {fp[0] for fp, _ in reads} == {"r0"}
    fresh_runs = {fp[0] for hold, reads, _ in results if not hold for fp, _ in reads}
    assert "r5" in fresh_runs and len(fresh_runs) >= 2, fresh_runs
    # Publishing is a rename: it never waits for the readers (one held the old
    # file open the whole time). Waiting on a lock would take DuckDB's lock
    # timeout or fail; the bound is generous so a loaded machine cannot flake it.
    assert max(durations) < 10.0, durations
    con = duckdb.connect(str(env_paths.current_db), read_only=True)
    assert _fingerprint(con) == expected["r5"]
    con.close()
    assert not list(env_paths.published.rglob("*.wal"))
