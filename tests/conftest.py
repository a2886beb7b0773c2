"""Shared fixtures. Every test gets its own drop folder and warehouse home,
so tests never touch ./data and can run in any order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("SCARF_ANALYTICS", "false")

from program_reporting.settings import Paths, paths  # noqa: E402

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "ppp"


@pytest.fixture
def env_paths(tmp_path, monkeypatch) -> Paths:
    """PROGRAM_REPORTING_DROP and _HOME pointed at fresh temporary folders."""
    monkeypatch.setenv("PROGRAM_REPORTING_DROP", str(tmp_path / "drop"))
    monkeypatch.setenv("PROGRAM_REPORTING_HOME", str(tmp_path / "home"))
    p = paths()
    p.drop.mkdir(parents=True)
    p.home.mkdir(parents=True)
    return p
