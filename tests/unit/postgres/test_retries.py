"""The retry policies: how often, how long apart, on which errors (tenacity)."""

from __future__ import annotations

import logging

import pytest

psycopg2 = pytest.importorskip("psycopg2")

from program_reporting.postgres import connection as pg  # noqa: E402
from program_reporting.postgres import serving as publish_pg  # noqa: E402


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    return slept


def _failing(monkeypatch, errors: list[BaseException]) -> list[int]:
    calls: list[int] = []

    def swap_once(conn, load=None):
        calls.append(1)
        if errors:
            raise errors.pop(0)

    monkeypatch.setattr(publish_pg, "_swap_once", swap_once)
    return calls


def test_a_swap_that_keeps_waiting_for_readers_gives_up_after_five_attempts(monkeypatch, sleeps, caplog):
    lock_timeout = psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout")
    calls = _failing(monkeypatch, [lock_timeout] * 10)
    with (
        caplog.at_level(logging.WARNING, logger=publish_pg.log.name),
        pytest.raises(pg.PgError, match="after 5 attempts"),
    ):
        publish_pg._swap(object())
    assert len(calls) == publish_pg.SWAP_ATTEMPTS == 5
    assert sleeps == [1, 2, 3, 4]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4  # one line per retry


def test_a_swap_retries_a_deadlock_and_then_succeeds(monkeypatch, sleeps):
    calls = _failing(monkeypatch, [psycopg2.errors.DeadlockDetected("deadlock"), psycopg2.errors.LockNotAvailable("x")])
    publish_pg._swap(object())
    assert len(calls) == 3 and sleeps == [1, 2]


def test_any_other_error_of_a_swap_is_not_retried(monkeypatch, sleeps):
    calls = _failing(monkeypatch, [psycopg2.errors.UndefinedTable("no such table")])
    with pytest.raises(psycopg2.errors.UndefinedTable):
        publish_pg._swap(object())
    assert len(calls) == 1 and sleeps == []
