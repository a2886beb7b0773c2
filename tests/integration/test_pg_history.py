"""PostgreSQL's history of published sets (postgres/history.py, schema
published_history) against the files' (core/published.py): every run's
cells and the as-of answers are the same; bi_reader reads it and cannot write
it; loading it never makes a reader of the current set wait, nor waits for one."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import psycopg2
import pytest
from helpers.landed import land_all
from helpers.marts import mutate, write_audit, write_marts

from program_reporting.core import published as files_history
from program_reporting.core import settings
from program_reporting.core.published import KPI_TABLES
from program_reporting.postgres import history as pg_history
from program_reporting.postgres import serving
from program_reporting.postgres.production import init_warehouse
from program_reporting.publishing import wap

pytestmark = pytest.mark.postgres

HIST = settings.PUBLISHED_HISTORY_SCHEMA
PUB = settings.PUBLISHED_SCHEMA

# The third run restates a past date's cell and drops a date's rows (a late correction).
RESTATED = (
    "UPDATE kpi_segment_daily SET goods_purchased_on_day = goods_purchased_on_day + 7.25 "
    "WHERE program_code = 'SPARK-2020' AND as_of_date = DATE '2020-06-04' AND region = 'CN-GD'",
    "UPDATE kpi_program_daily SET goods_purchased_on_day = goods_purchased_on_day + 7.25 "
    "WHERE program_code = 'SPARK-2020' AND as_of_date = DATE '2020-06-04'",
    *(f"DELETE FROM {t} WHERE as_of_date = DATE '2020-06-02'" for t in KPI_TABLES),
)


def _admin():
    return psycopg2.connect(**settings.postgres().dsn())


def _bi_reader(db: str):
    return psycopg2.connect(host="127.0.0.1", port=5432, user=settings.BI_READER_ROLE, dbname=db)


@pytest.fixture
def warehouse(pg_database, env_paths):
    init_warehouse()
    return pg_database


def _night(paths, run_id: str, ds: str, bump: int, *mutations: str) -> None:
    """One run through the write-audit-publish path: gates, files, then PostgreSQL when it is the target."""
    land_all(paths.home, ds)
    db = write_audit(paths, run_id, ds, bump=bump)
    if mutations:
        mutate(db, *mutations)
    assert wap.gate_marts(run_id, ds, paths).passed
    wap.publish(run_id, paths=paths)


def _cell(table_rows, column: str, **key):
    columns, rows = table_rows
    matches = [r for r in rows if all(r[columns.index(k)] == v for k, v in key.items())]
    return [r[columns.index(column)] for r in matches]


def test_postgres_history_gives_every_run_and_every_as_of_answer_as_the_files(warehouse, env_paths, monkeypatch):
    """Three runs whose sets differ (all figures bumped; then a past date restated and a
    date dropped); the first published while PostgreSQL was not the target, caught up
    by the second. For every run and table, and for moments before, at and between the
    publications, PostgreSQL's history gives exactly the files' cells."""
    monkeypatch.setenv("PROGRAM_REPORTING_TARGET", "duckdb")
    _night(env_paths, "r1", "2020-06-05", 0)
    time.sleep(1.1)  # published_at has second precision: keep the publications apart
    monkeypatch.setenv("PROGRAM_REPORTING_TARGET", "postgres")
    _night(env_paths, "r2", "2020-06-06", 1)
    time.sleep(1.1)
    _night(env_paths, "r3", "2020-06-07", 1, *RESTATED)

    files_runs = files_history.published_runs(env_paths)
    assert [r.run_id for r in files_runs] == ["r1", "r2", "r3"]
    pg_runs = pg_history.runs()
    assert [(r.run_seq, r.run_id, r.ds, r.caught_up) for r in pg_runs] == [
        (1, "r1", "2020-06-05", True),
        (2, "r2", "2020-06-06", False),
        (3, "r3", "2020-06-07", False),
    ]
    # Validity intervals: the files' publication times, each run valid until the next.
    assert [r.published_at for r in pg_runs] == [r.published_at for r in files_runs]
    assert [r.valid_to for r in pg_runs] == [r.superseded_at for r in files_runs]
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT run_id, published_at FROM {PUB}.run_info")
        assert cur.fetchall() == [("r3", files_runs[-1].published_at)]  # the serving schema agrees

    # Every cell of every run, by run id.
    sets = {}
    for run in files_runs:
        for table in KPI_TABLES:
            expected = files_history.figures(run, [table])[table]
            got = pg_history.figures(table, run_id=run.run_id)
            assert got == expected, (run.run_id, table)
            sets[(run.run_id, table)] = got
    assert all(
        sets[(a, t)] != sets[(b, t)]
        for t in ("kpi_program_daily", "kpi_segment_daily")
        for a, b in (("r1", "r2"), ("r2", "r3"))
    )
    # The restatement and the drop are what they should be, typed as published.
    pd = "kpi_program_daily"
    spark_0604 = {"program_code": "SPARK-2020", "as_of_date": dt.date(2020, 6, 4)}
    old, new = (
        _cell(sets[("r2", pd)], "goods_purchased_on_day", **spark_0604),
        _cell(sets[("r3", pd)], "goods_purchased_on_day", **spark_0604),
    )
    assert len(old) == len(new) == 1 and isinstance(old[0], Decimal) and new[0] - old[0] == Decimal("7.25")
    assert _cell(sets[("r2", pd)], "program_code", as_of_date=dt.date(2020, 6, 2))
    assert not _cell(sets[("r3", pd)], "program_code", as_of_date=dt.date(2020, 6, 2))

    # Stored compactly: r1 8 rows; r2 bumps all 10; r3 closes the two 2020-06-02 rows and
    # the restated one, and adds the restated one and two for 2020-06-07.
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*), count(*) FILTER (WHERE to_run_seq IS NULL) FROM {HIST}.{pd}")
        assert cur.fetchone() == (8 + 10 + 3, 10)
        cur.execute(
            f"SELECT from_run_seq, to_run_seq FROM {HIST}.{pd} "
            "WHERE program_code = 'PPP-2020' AND as_of_date = DATE '2020-06-04' ORDER BY from_run_seq"
        )
        assert cur.fetchall() == [(1, 2), (2, None)]  # unchanged by r3: one version for r2 and r3
        cur.execute(f"SELECT count(*) FROM {HIST}.{pd}_by_run WHERE run_id = 'r3'")
        assert cur.fetchone()[0] == len(sets[("r3", pd)][1])

    # As of a moment: before, at and between the publications, and long after.
    first = files_runs[0].published_at
    with pytest.raises(files_history.HistoryError):
        files_history.run_as_of(first - dt.timedelta(seconds=1), env_paths)
    with pytest.raises(pg_history.HistoryLookupError, match="nothing had been published"):
        pg_history.figures(pd, as_of=first - dt.timedelta(seconds=1))
    moments = [m for r in files_runs for m in (r.published_at, r.published_at + dt.timedelta(milliseconds=500))]
    moments.append(files_runs[-1].published_at + dt.timedelta(days=30))
    answered = set()
    for moment in moments:
        run = files_history.run_as_of(moment, env_paths)
        assert pg_history.find_run(as_of=moment).run_id == run.run_id
        answered.add(run.run_id)
        for table in KPI_TABLES:
            assert pg_history.figures(table, as_of=moment) == files_history.figures(run, [table])[table], (
                moment,
                table,
            )
    assert answered == {"r1", "r2", "r3"}
    # Filtered as the files filter.
    moment = files_runs[1].published_at + dt.timedelta(milliseconds=500)
    assert (
        pg_history.figures(pd, as_of=moment, program="SPARK-2020", ds="2020-06-04")
        == files_history.figures(files_runs[1], [pd], program="SPARK-2020", ds="2020-06-04")[pd]
    )

    # A run already current is not loaded again.
    assert serving.publish("r3", env_paths).reason == "already published"
    assert len(pg_history.runs()) == 3


def test_bi_reader_reads_the_history_and_cannot_write_it(warehouse, env_paths):
    for i, (run_id, ds) in enumerate([("r1", "2020-06-05"), ("r2", "2020-06-06")]):
        source = write_marts(env_paths.home / "sets" / run_id / "kpi.duckdb", run_id, ds, bump=i)
        serving.publish(run_id, env_paths, source=source, validate=False)

    reader = _bi_reader(warehouse)
    reader.autocommit = True
    try:
        with reader.cursor() as cur:
            cur.execute(f"SELECT run_seq, run_id FROM {HIST}.runs ORDER BY run_seq")
            assert cur.fetchall() == [(1, "r1"), (2, "r2")]
            for table in KPI_TABLES:
                cur.execute(f"SELECT count(*) FROM {HIST}.{table}")
                assert cur.fetchone()[0] > 0
                cur.execute(f"SELECT count(DISTINCT run_id) FROM {HIST}.{table}_by_run")
                assert cur.fetchone()[0] == 2
            cur.execute(f"SELECT {HIST}.run_as_of(now())")
            assert cur.fetchone()[0] == 2
            for forbidden in (
                f"INSERT INTO {HIST}.runs (run_seq, run_id, ds, published_at, valid_from, kpi_columns) "
                "VALUES (99, 'forged', DATE '2020-06-05', now(), now(), '{}')",
                f"DELETE FROM {HIST}.runs",
                f"UPDATE {HIST}.kpi_program_daily SET enrolled_merchants = 0",
                f"DELETE FROM {HIST}.kpi_program_daily",
                f"INSERT INTO {HIST}.kpi_target_progress (from_run_seq, program_code) VALUES (1, 'X')",
                f"CREATE TABLE {HIST}.scribble (x int)",
                f"DROP VIEW {HIST}.kpi_program_daily_by_run",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(forbidden)
    finally:
        reader.close()


def test_a_reader_holding_a_transaction_does_not_block_the_publication(warehouse, env_paths):
    """A BI tool inside a REPEATABLE READ transaction on published.kpi_program_daily (and on
    the history) while the next run is published: the publication finishes with the
    reader's transaction still open; the reader keeps its snapshot, then sees the new set."""
    sets = [
        write_marts(env_paths.home / "sets" / run_id / "kpi.duckdb", run_id, ds, bump=i)
        for i, (run_id, ds) in enumerate([("r1", "2020-06-05"), ("r2", "2020-06-06")])
    ]
    serving.publish("r1", env_paths, source=sets[0], validate=False)

    reader = _bi_reader(warehouse)
    reader.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with reader.cursor() as cur:
            cur.execute(f"SELECT count(*), max(as_of_date) FROM {PUB}.kpi_program_daily")
            before = cur.fetchone()
            cur.execute(f"SELECT count(*) FROM {HIST}.kpi_program_daily_by_run")
            cur.fetchone()
            done, errors = threading.Event(), []

            def publish() -> None:
                try:
                    serving.publish("r2", env_paths, source=sets[1], validate=False)
                    done.set()
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            publisher = threading.Thread(target=publish)
            publisher.start()
            publisher.join(timeout=60)  # a publication that waited would time out (lock_timeout) or still wait
            assert not errors, errors
            assert done.is_set(), "the publication waited for the reader"
            assert reader.status == psycopg2.extensions.STATUS_IN_TRANSACTION
            cur.execute(f"SELECT count(*), max(as_of_date) FROM {PUB}.kpi_program_daily")
            assert cur.fetchone() == before  # the reader's snapshot: still run r1
            cur.execute(f"SELECT max(run_seq) FROM {HIST}.runs")
            assert cur.fetchone()[0] == 1
        reader.commit()
        with reader.cursor() as cur:
            cur.execute(f"SELECT run_id FROM {PUB}.run_info")
            assert cur.fetchone()[0] == "r2"
            cur.execute(f"SELECT run_id FROM {HIST}.runs WHERE valid_to IS NULL")
            assert cur.fetchall() == [("r2",)]
        reader.rollback()
    finally:
        reader.close()
