"""Shared fixtures. Every test gets its own drop folder and warehouse home,
so tests never touch ./data and can run in any order."""

from __future__ import annotations

import os
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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`, --dist loadgroup): the tests of a module with a
    module-scoped fixture stay in one worker (the fixture is built once), and the modules
    that write RELIABILITY.md share one worker, whose recorder must see every section.
    Every other test goes to whichever worker is free."""
    # the controller has --dist; a worker has only pytest-xdist's loadgroup flag
    if not (getattr(config.option, "loadgroup", False) or getattr(config.option, "dist", "no") == "loadgroup"):
        return
    for item in items:
        module = item.nodeid.split("::")[0]
        if module in reliability_log.MODULES:
            item.add_marker(pytest.mark.xdist_group("reliability"))
        elif _uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(module))


def _uses_module_fixture(item) -> bool:
    """Whether the test uses a module-scoped fixture of its own module (pytest's session
    fixtures, such as tmp_path_factory, are no reason to keep tests together)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info else ()
    return any(d.scope == "module" for chain in defs for d in chain)


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
