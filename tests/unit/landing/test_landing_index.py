"""The landing index (landing_index): derived from the raw layer, so whatever
state it is found in - missing, from another DuckDB version, damaged, or
behind the raw layer after a kill - landing gives the same answers as if it
had read the whole history. Real files, real landing code, real DuckDB."""

from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import pytest
from helpers.deliveries import row, write_delivery

from program_reporting.landing import key_index as landing_index
from program_reporting.landing import land as landing

D1, D2, D3 = "2020-06-02", "2020-06-03", "2020-06-04"


def quarantined(paths, source, ds):
    f = paths.quarantine / source / f"ds={ds}" / "quarantine.parquet"
    if not f.exists():
        return []
    return duckdb.sql(f"SELECT line, rule FROM '{f}' ORDER BY line").fetchall()


def entries(paths, source):
    con = duckdb.connect(str(landing_index.index_path(paths, source)), read_only=True)
    try:
        return con.execute("SELECT count(*), count(DISTINCT fid) FROM entries").fetchone()
    finally:
        con.close()


def land_events(paths, ds, rows):
    write_delivery(paths.drop, "credit_events", ds, rows)
    return landing.land("credit_events", ds, paths)


E1, E2 = row("credit_events", 1), row("credit_events", 2)


@pytest.fixture
def env_paths(env_paths, monkeypatch):
    """With the merchant of the events known, so they land rather than wait;
    tiny deliveries, so no share limit."""
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    merchant = row("credit_events")["merchant_id"]
    write_delivery(
        env_paths.drop,
        "merchants",
        "2020-06-01",
        [row("merchants", updated_at="2020-06-01T09:00:00+08:00", enrolled_on="2020-06-01", merchant_id=merchant)],
    )
    assert landing.land("merchants", "2020-06-01", env_paths)["loaded"] == 1
    return env_paths


def test_index_follows_every_committed_file(env_paths):
    land_events(env_paths, D1, [E1, E2])
    land_events(env_paths, D2, [row("credit_events", 3)])
    assert entries(env_paths, "credit_events") == (3, 2)
    land_events(env_paths, D1, [E1])  # a re-delivery replaces the partition, and its entries
    assert entries(env_paths, "credit_events") == (2, 2)


@pytest.mark.parametrize("damage", ["deleted", "garbage", "other_version"])
def test_a_lost_or_untrusted_index_is_rebuilt_from_raw(env_paths, damage):
    land_events(env_paths, D1, [E1, E2])
    path = landing_index.index_path(env_paths, "credit_events")
    if damage == "deleted":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"not a duckdb file" * 100)
    else:
        con = duckdb.connect(str(path))
        con.execute("UPDATE meta SET version = '0/0.0.0'")
        con.close()
    record = land_events(env_paths, D2, [E1, dict(E2, amount="1.00")])
    assert quarantined(env_paths, "credit_events", D2) == [(3, "event_id_conflict")]
    assert record["loaded"] == 1  # the identical repeat of E1 loads
    assert entries(env_paths, "credit_events") == (3, 2)


def test_an_index_left_behind_by_a_kill_catches_up(env_paths):
    """A landing killed after its commit but before the index learnt of it:
    modelled by restoring the index as it was before the landing."""
    land_events(env_paths, D1, [E1])
    path = landing_index.index_path(env_paths, "credit_events")
    before = path.with_name("before.duckdb")
    shutil.copy(path, before)
    land_events(env_paths, D2, [E2])
    land_events(env_paths, D1, [row("credit_events", 9)])  # E1 is no longer in force
    shutil.copy(before, path)  # stale: knows only the first D1 file, not D2 or the re-delivery
    land_events(env_paths, D3, [E1, dict(E2, amount="7.00")])
    # E1's only delivery was replaced: not a conflict; E2 (in D2) differs: a conflict
    assert quarantined(env_paths, "credit_events", D3) == [(3, "event_id_conflict")]
    assert entries(env_paths, "credit_events") == (3, 3)


def test_only_the_partitions_holding_a_key_are_read(env_paths):
    for i, ds in enumerate([D1, D2, D3], start=1):
        land_events(env_paths, ds, [row("credit_events", i)])
    con = duckdb.connect()
    landing_index.attach(con, env_paths, "credit_events")
    hits = landing_index.candidate_files(
        con, env_paths, "credit_events", "2020-06-05", "SELECT * FROM (VALUES ('E2'), ('E77')) v(event_id)"
    )
    con.close()
    assert [f.parent.name for f in hits] == [f"ds={D2}"]


def test_held_rows_are_compared_only_with_files_that_came_since(env_paths):
    """Held orphans were compared with the history when they were held: the
    release reads only the files the index learnt of afterwards."""
    land_events(env_paths, D1, [row("credit_events", 1)])
    land_events(env_paths, D2, [row("credit_events", 2)])
    held_at = dt.datetime.now(dt.UTC)
    land_events(env_paths, D1, [row("credit_events", 1), row("credit_events", 3)])  # a re-delivery after it
    con = duckdb.connect()
    landing_index.attach(con, env_paths, "credit_events")
    keys = "SELECT * FROM (VALUES ('E1'), ('E2'), ('E3')) v(event_id)"
    everything = landing_index.candidate_files(con, env_paths, "credit_events", "2020-06-05", keys)
    since = landing_index.candidate_files(con, env_paths, "credit_events", "2020-06-05", keys, added_after=held_at)
    later = landing_index.candidate_files(
        con, env_paths, "credit_events", "2020-06-05", keys, added_after=dt.datetime.now(dt.UTC)
    )
    con.close()
    assert [f.parent.name for f in everything] == [f"ds={D1}", f"ds={D2}"]
    assert [f.parent.name for f in since] == [f"ds={D1}"]
    assert later == []


def test_merchants_index_answers_known_as_of_a_date(env_paths):
    write_delivery(
        env_paths.drop, "merchants", D1, [row("merchants", 7, updated_at=f"{D1}T09:00:00+08:00", enrolled_on=D1)]
    )
    landing.land("merchants", D1, env_paths)
    con = duckdb.connect()
    landing_index.known_merchants(con, env_paths, D1)
    assert con.execute("SELECT count(*) FROM known WHERE merchant_id = 'M7'").fetchone() == (1,)
    landing_index.known_merchants(con, env_paths, "2020-06-01")  # before its delivery: not known yet
    assert con.execute("SELECT count(*) FROM known WHERE merchant_id = 'M7'").fetchone() == (0,)
    con.close()


def test_an_index_open_elsewhere_is_an_error_never_a_rebuild(env_paths):
    """Only the holder of the source's lock opens the index. A second process
    with it open is a bug of the pipeline's: attach says so, and never treats
    the file as damaged (deleting a file another process writes to)."""
    import subprocess
    import sys

    land_events(env_paths, D1, [E1])
    path = landing_index.index_path(env_paths, "credit_events")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        con = duckdb.connect()
        with pytest.raises(duckdb.IOException, match="lock"):
            landing_index.attach(con, env_paths, "credit_events")
        con.close()
    finally:
        holder.kill()
        holder.wait()
    assert entries(env_paths, "credit_events") == (1, 1)  # the same file, untouched
