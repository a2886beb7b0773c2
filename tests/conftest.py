"""Shared fixtures. Every test gets its own drop folder and warehouse home,
so tests never touch ./data and can run in any order."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("SCARF_ANALYTICS", "false")

from helpers import reliability_log  # noqa: E402
from helpers.reliability_log import reliability  # noqa: E402, F401 - the fixture of the reliability tests

from program_reporting.core.settings import Paths, paths  # noqa: E402

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "ppp"
DATA = Path(__file__).resolve().parent / "data"  # files the tests ship with


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (`make test`, --dist loadgroup), which tests share a worker:
    the tests of a module that defines a module-scoped fixture (it is built once), and
    the modules that write RELIABILITY.md (their recorder must see every section).
    Every other test goes to whichever worker is free.

    A scheduler of our own because pytest-xdist 3.8 names groups by rewriting
    item._nodeid, which pytest 9.2 no longer reads: its xdist_group marks group nothing."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedFixtureScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return SharedFixtureScheduling(config, log)


def worker_group(nodeid: str) -> str:
    module = nodeid.split("::")[0]
    if module in reliability_log.MODULES:
        return "reliability"
    return module if _defines_module_fixture(module) else nodeid


@functools.cache
def _defines_module_fixture(module: str) -> bool:
    path = Path(__file__).resolve().parent.parent / module
    return path.is_file() and re.search(r"@pytest\.fixture\([^)]*scope=\"module\"", path.read_text()) is not None


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist controller: a worker that regenerated RELIABILITY.md fails the run."""
    if getattr(node, "workeroutput", {}).get(reliability_log.STALE):
        node.config.stash[STALE_KEY] = True


STALE_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if session.config.stash.get(STALE_KEY, False):
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr:
            tr.write_line("RELIABILITY.md was out of date with this run: regenerated; review and commit it", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def env_paths(tmp_path, monkeypatch) -> Paths:
    """PROGRAM_REPORTING_DROP and _HOME pointed at fresh temporary folders."""
    monkeypatch.setenv("PROGRAM_REPORTING_DROP", str(tmp_path / "drop"))
    monkeypatch.setenv("PROGRAM_REPORTING_HOME", str(tmp_path / "home"))
    p = paths()
    p.drop.mkdir(parents=True)
    p.home.mkdir(parents=True)
    return p


def _reachable(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_database(monkeypatch):
    """A fresh PostgreSQL database on 127.0.0.1:5432 for this test, dropped after.

    Skips, naming the server, where PostgreSQL is not reachable (CI starts it)."""
    import uuid

    if not _reachable("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    import psycopg2

    name = f"pr_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("PROGRAM_REPORTING_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("PROGRAM_REPORTING_PG_PORT", "5432")
    monkeypatch.setenv("PROGRAM_REPORTING_PG_USER", "postgres")
    monkeypatch.setenv("PROGRAM_REPORTING_PG_DATABASE", name)
    yield name
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def redis_url():
    if not _reachable("127.0.0.1", 6379):
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"
