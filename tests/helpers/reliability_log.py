"""What the reliability tests tried and what happened, written to RELIABILITY.md.

Tests record one entry per case (`reliability.record(section, key, entry)`) and
mark it passed at the very end (`reliability.passed(section, key)`). At the end
of a session that ran every section completely and passed every case, the
document is rendered from the entries; if it differs from the committed
RELIABILITY.md, the file is rewritten and the session FAILS, so a stale
document cannot survive `make test` (commit the regenerated file). A partial
run (-k, one file) leaves the file alone.

Entries hold only what a run reproduces exactly (cases, outcomes, bounds).
Timings and memory peaks vary from run to run; they go to
.pytest_cache (key reliability/last_run), not into the document.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "RELIABILITY.md"
PLUGIN = "program_reporting_reliability_log"

# section -> expected keys, registered by the test modules at import time
EXPECTED: dict[str, list[str]] = {}
SECTIONS = ("faults", "concurrency", "corpus", "property", "pii", "safety")
# the test modules that record them: under pytest-xdist they run in one worker (conftest.py),
# whose recorder then sees every section
MODULES = (
    "tests/integration/test_faults.py",
    "tests/unit/landing/test_landing_race.py",
    "tests/integration/test_corpus.py",
    "tests/unit/landing/test_property_landing.py",
    "tests/unit/core/test_pii.py",
    "tests/integration/test_safety.py",
)
STALE = "reliability_stale"  # what a pytest-xdist worker reports to the controller


def expect(section: str, keys: list[str]) -> None:
    """Register a section's keys (several test modules may share a section)."""
    known = EXPECTED.setdefault(section, [])
    known += [k for k in keys if k not in known]


class Recorder:
    def __init__(self) -> None:
        self.entries: dict[str, dict[str, dict]] = {}
        self.measured: dict[str, dict[str, dict]] = {}
        self.ok: dict[str, set[str]] = {}

    def record(self, section: str, key: str, entry: dict, measured: dict | None = None) -> None:
        self.entries.setdefault(section, {})[key] = entry
        if measured:
            self.measured.setdefault(section, {})[key] = measured

    def passed(self, section: str, key: str) -> None:
        self.ok.setdefault(section, set()).add(key)

    def complete(self) -> tuple[bool, str]:
        for section in SECTIONS:
            keys = EXPECTED.get(section)
            if not keys:
                return False, f"section {section} was not collected"
            missing = [k for k in keys if k not in self.ok.get(section, set())]
            if missing:
                return False, f"section {section}: {len(missing)} case(s) did not run or pass ({missing[0]}, ...)"
        return True, ""

    # pytest hook: the plugin is registered by the first test that records
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if getattr(session.config, "cache", None) is not None:
            session.config.cache.set("reliability/last_run", self.measured)
            session.config.cache.set("reliability/last_entries", self.entries)
        done, why = self.complete()
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if not done:
            if tr:
                tr.write_line(f"RELIABILITY.md left as it is (partial run: {why})")
            return
        text = render(self.entries)
        old = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if text != old:
            DOC.write_text(text, encoding="utf-8")
            if tr:
                tr.write_line(
                    "RELIABILITY.md was out of date with this run: regenerated; review and commit it", red=True
                )
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker: the controller fails the run
                session.config.workeroutput[STALE] = True
        elif tr:
            tr.write_line("RELIABILITY.md matches this run")


def recorder(config) -> Recorder:
    plugin = config.pluginmanager.get_plugin(PLUGIN)
    if plugin is None:
        plugin = Recorder()
        config.pluginmanager.register(plugin, PLUGIN)
    return plugin


@pytest.fixture
def reliability(request) -> Recorder:
    return recorder(request.config)


# --------------------------------------------------------------------------
# rendering


def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _ordered(section: str, entries: dict) -> list[dict]:
    got = entries.get(section, {})
    return [got[k] for k in EXPECTED.get(section, []) if k in got]


def _open_findings(faults: list[dict], safety: list[dict]) -> str:
    found = [f"{f['failpoint']}: {f['rerun']}" for f in faults if "refused" in f["rerun"] or "NOT" in f["rerun"]]
    found += [s["check"].split(" with ")[0] for s in safety if s["outcome"].startswith("OPEN")]
    left = sorted({part.split(" ", 1)[1] for f in faults for part in f["leftovers"].split(", ") if part != "nothing"})
    if left:
        found.append("left behind after kills, never cleaned up: " + ", ".join(left))
    return "; ".join(found) or "none"


def render(entries: dict) -> str:
    faults = _ordered("faults", entries)
    concurrency = _ordered("concurrency", entries)
    corpus = _ordered("corpus", entries)
    prop = _ordered("property", entries)
    pii = _ordered("pii", entries)
    safety = _ordered("safety", entries)
    outcomes: dict[str, int] = {}
    for c in corpus:
        kind = (
            c["actual"].split(":")[0]
            if c["actual"].startswith(("delivery rejected", "CRASH"))
            else ("not read / refused" if c["actual"].startswith(("not read", "refused")) else "landed")
        )
        outcomes[kind] = outcomes.get(kind, 0) + 1
    parts = [
        "# Reliability and security: what was tried, and what happened",
        "",
        "Generated by the test suite (`tests/helpers/reliability_log.py`) from the last complete run of "
        "`tests/integration/test_faults.py`, `tests/unit/landing/test_landing_race.py`, `tests/integration/test_corpus.py`, "
        "`tests/unit/landing/test_property_landing.py`, `tests/unit/core/test_pii.py` and `tests/integration/test_safety.py`; `make test` fails when this file "
        "differs from what the run found, so it cannot drift. Do not edit by hand.",
        "",
        f"Summary: {len(faults)} kill points survived, {len(concurrency)} concurrent-reader checks, "
        f"{len(corpus)} malformed deliveries with the outcome each must get "
        f"({', '.join(f'{v} {k}' for k, v in sorted(outcomes.items()))}), "
        f"{len(prop)} property-based checks, {len(pii)} personal-data scans, {len(safety)} safety checks; "
        "every test passed. Open findings (the test records the behaviour and checks nothing worse happens): "
        + _open_findings(faults, safety)
        + ".",
        "",
        "To regenerate after a change: `.venv/bin/pytest tests/integration/test_faults.py tests/unit/landing/test_landing_race.py tests/integration/test_corpus.py "
        "tests/unit/landing/test_property_landing.py tests/unit/core/test_pii.py tests/integration/test_safety.py`, then commit this file.",
        "",
        "## 1. Faults: the process killed (SIGKILL) at each stage",
        "",
        "Each row: a stage run in its own process, killed at the named point (a failpoint, "
        "`include/program_reporting/core/failpoints.py`); then the state is checked, and a plain re-run "
        "of the same date is made and checked. *Published after kill* is what `current.duckdb` "
        "held right after the kill; *identity* is `delivered = loaded + quarantined + held` for "
        "every landed delivery, with the Parquet row counts behind each figure.",
        "",
        _table(
            [
                "stage",
                "killed at",
                "published after kill",
                "re-run",
                "rows (delivered = loaded + quarantined + held)",
                "left behind",
            ],
            [
                [f["stage"], f"`{f['failpoint']}`", f["after_kill"], f["rerun"], f["rows"], f["leftovers"]]
                for f in faults
            ],
        ),
        "",
        "## 2. Concurrency: readers while publishing (and while publishing is killed), a delivery rewritten "
        "while it lands",
        "",
        _table(
            ["check", "readers", "publishes", "outcome"],
            [[c["check"], c["readers"], c["publishes"], c["outcome"]] for c in concurrency],
        ),
        "",
        "## 3. Bad-input corpus (`tests/data/corpus/cases.yaml`)",
        "",
        "Landing must give each delivery exactly this outcome; for every landed one the "
        "reconciliation identity is checked against the Parquet files, for every refused one "
        "that nothing landed and that the failure record names the cause. Cases marked with a "
        "bound ran in a child process under that wall-time and peak-memory bound.",
        "",
        _table(
            ["case", "source", "what is wrong", "outcome", "bound"],
            [
                [
                    f"`{c['id']}`",
                    c["source"],
                    c["why"],
                    c["actual"],
                    (f"< {c['seconds_bound']} s, < {c['rss_bound_mb']} MB" if c.get("seconds_bound") else ""),
                ]
                for c in corpus
            ],
        ),
        "",
        "## 4. Property-based tests (hypothesis) on the CSV and row-rule layer",
        "",
        _table(["property", "examples", "outcome"], [[p["property"], p["examples"], p["outcome"]] for p in prop]),
        "",
        "## 5. Personal data",
        "",
        _table(["scanned", "how", "finding"], [[p["what"], p["how"], p["finding"]] for p in pii]),
        "",
        "## 6. Safety of operation",
        "",
        _table(["check", "outcome"], [[s["check"], s["outcome"]] for s in safety]),
        "",
    ]
    return "\n".join(parts)


def dump(entries: dict) -> str:
    return json.dumps(entries, indent=1, sort_keys=True)
