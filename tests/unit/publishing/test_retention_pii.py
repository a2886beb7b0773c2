"""Retention of personal data (issue 28): the restricted partitions and the
raw text of quarantined merchants rows are kept PROGRAM_REPORTING_RETAIN_PII_DAYS
(default 365), then purged by the one retention path; the clock is moved by
`now`. Quarantine rows keep everything but their raw text."""

from __future__ import annotations

import os
import time

import duckdb

from program_reporting.publishing import retention

DAY = 86400


def _parquet(path, query):
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)")
    con.close()


def _age(path, seconds_ago, now):
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (now - seconds_ago,) * 2)


def _layers(p, now, days_ago):
    restricted = p.restricted / "merchants_pii" / "ds=2020-06-01"
    _parquet(restricted / "rows.parquet", "SELECT 'M1' AS merchant_id, 'Wang Wei' AS owner_name")
    quarantine = p.quarantine / "merchants" / "ds=2020-06-01" / "quarantine.parquet"
    _parquet(
        quarantine,
        "SELECT 'merchants' AS source, 8 AS line, 'region_unknown' AS rule, 'region x' AS detail, "
        "'M1,SPARK-2020,Shop,Wang Wei,13912345678' AS raw_text",
    )
    _age(restricted, days_ago * DAY, now)
    _age(quarantine, days_ago * DAY, now)
    return restricted, quarantine


def test_personal_data_goes_after_the_period_and_not_before(env_paths, monkeypatch):
    monkeypatch.delenv("PROGRAM_REPORTING_RETAIN_PII_DAYS", raising=False)
    p, now = env_paths, time.time()
    restricted, quarantine = _layers(p, now, days_ago=300)
    pol = retention.policy()
    assert pol.personal_data == 365 * DAY and "personal data 365 d" in pol.describe()
    assert [e for e in retention.find(p, pol=pol, now=now).entries if e.category == "personal-data"] == []

    later = now + 100 * DAY  # the clock moves on: 400 days since landing
    plan = retention.find(p, pol=pol, now=later)
    listed = sorted(str(e.path) for e in plan.entries if e.category == "personal-data")
    assert listed == sorted([str(restricted), str(quarantine)])
    done = retention.remove(plan, p)
    assert all(e.error is None for e in done), done
    assert not restricted.exists()
    rows = duckdb.sql(f"SELECT line, rule, detail, raw_text FROM '{quarantine}'").fetchall()
    assert rows == [(8, "region_unknown", "region x", None)]
    assert b"Wang Wei" not in quarantine.read_bytes() and b"13912345678" not in quarantine.read_bytes()
    # purged once: not listed again
    assert [e for e in retention.find(p, pol=pol, now=later).entries if e.category == "personal-data"] == []


def test_the_period_is_a_setting_and_never_keeps_it(env_paths, monkeypatch):
    p, now = env_paths, time.time()
    restricted, quarantine = _layers(p, now, days_ago=40)
    monkeypatch.setenv("PROGRAM_REPORTING_RETAIN_PII_DAYS", "30")
    plan = retention.find(p, now=now)
    assert {e.path for e in plan.entries if e.category == "personal-data"} == {restricted, quarantine}
    monkeypatch.setenv("PROGRAM_REPORTING_RETAIN_PII_DAYS", "never")
    assert not [e for e in retention.find(p, now=now + 3650 * DAY).entries if e.category == "personal-data"]
